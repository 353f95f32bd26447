-- Sends the benchmark's pre-encoded requests in rotation. The requests file has one per line:
-- "path content-type body-as-hex". They are formatted once, at start, so wrk's hot loop only hands out strings.
local requests = {}
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, content_type, hex = line:match("^(%S+) (%S+) (%x*)$")
    local body = hex:gsub("%x%x", function(pair) return string.char(tonumber(pair, 16)) end)
    requests[#requests + 1] = wrk.format("POST", path, { ["Content-Type"] = content_type }, body)
  end
  if #requests == 0 then error("no requests in " .. args[1]) end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
