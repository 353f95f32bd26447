"""Trains the four demo models (apply, approve, risk, ltv) on a synthetic population and writes them, the manifest
and the scoring test fixtures.

Run from the repository root with Debian's Python (it has XGBoost 1.7):

    /usr/bin/python3 data/models/train_demo_models.py

Deterministic: fixed seeds, one XGBoost thread. The population and the label rules are documented in
data/models/README.md; keep the two in step.
"""

import json
import math
import os
import struct

import numpy as np
import xgboost as xgb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS_DIR = os.path.join(ROOT, "data", "models")
FIXTURES_DIR = os.path.join(ROOT, "test", "fixtures", "scoring")
SCHEMA_PATH = os.path.join(ROOT, "data", "profile-schema.json")

MODEL_VERSION = "2026.11.25-1"
SEED = 20261125
TRAIN_ROWS = 40_000
FIXTURE_ROWS = 300
FIXTURE_DEVICES = 200
# Share of training rows whose device is unknown to the store: every profile feature is NaN, the label still comes
# from the real (hidden) device, so the models learn what an unknown device is worth on average.
UNKNOWN_SHARE = 0.05

OS_IOS, OS_ANDROID = 1, 2  # src/engine/types.ts Os

SEGMENTS = ["active", "dormant", "registered", "blacklisted", "high_risk", "prospect"]
SEGMENT_SHARES = [0.08, 0.10, 0.12, 0.02, 0.05, 0.63]

FEATURES = {
    "apply": [
        "finance_app_count", "engagement_score", "device_price_band", "multi_lender_count", "region_tier",
        "income_score", "days_since_last_active", "flag:registered", "flag:applied", "flag:approved",
        "flag:active_borrower", "flag:dormant", "ctx:os_android", "ctx:os_ios", "ctx:known_device",
    ],
    "risk": [
        "multi_lender_count", "flag:overdue_recent", "repay_score", "income_score", "credit_band", "past_loan_count",
        "flag:blacklisted", "days_since_last_active", "ctx:known_device",
    ],
    "ltv": [
        "income_score", "credit_limit_hundred_yuan", "repay_score", "ltv_prior_yuan", "multi_lender_count",
        "credit_band", "past_loan_count", "region_tier", "ctx:known_device",
    ],
}
APPROVE_DENSE = ["income_score", "repay_score", "multi_lender_count"]
APPROVE_HASHED = ["credit_band", "region_tier", "flag:blacklisted", "flag:overdue_recent", "flag:approved", "ctx:known_device"]
APPROVE_BUCKETS = 256

GBDT_PARAMS = {
    "apply": dict(objective="binary:logistic", max_depth=5, eta=0.05, rounds=300, file="apply.json",
                  description="P(apply): the device's owner starts a loan application after seeing our ad."),
    "risk": dict(objective="binary:logistic", max_depth=4, eta=0.1, rounds=100, file="risk.json",
                 description="P(default | approved): the loan goes 90+ days overdue."),
    "ltv": dict(objective="reg:squarederror", max_depth=4, eta=0.1, rounds=50, file="ltv.json",
                description="Expected lifetime margin in yuan of an approved borrower."),
}


with open(SCHEMA_PATH) as schema_file:
    SCHEMA = json.load(schema_file)
SCHEMA_MISSING = {f["name"]: f["missing"] for f in SCHEMA["fields"] if "missing" in f}
FLAG_BITS = next(f["bits"] for f in SCHEMA["fields"] if f["name"] == "flags")
STRUCT_CODES = {"u8": "B", "u16": "H", "u32": "I", "f32": "f"}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def known_or(values, fallback):
    return np.where(np.isnan(values), fallback, values)


class Population:
    """Devices as the store holds them: raw integer fields with their missing sentinels, NaN floats."""

    def __init__(self, rng, n):
        self.n = n
        self.os = np.where(rng.random(n) < 0.75, OS_ANDROID, OS_IOS).astype(np.uint8)
        seg = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARES)
        is_ = {name: seg == i for i, name in enumerate(SEGMENTS)}

        bits = FLAG_BITS
        flags = np.zeros(n, dtype=np.uint16)

        def set_flag(mask, name):
            nonlocal flags
            flags = flags | (mask.astype(np.uint16) << bits[name])

        for name in ("registered", "applied", "approved", "active_borrower"):
            set_flag(is_["active"], name)
        for name in ("registered", "applied", "approved", "dormant"):
            set_flag(is_["dormant"], name)
        set_flag(is_["registered"], "registered")
        set_flag(is_["registered"] & (rng.random(n) < 0.5), "applied")
        set_flag(is_["blacklisted"], "blacklisted")
        for name, share in (("registered", 0.5), ("applied", 0.4), ("approved", 0.2), ("overdue_recent", 0.3)):
            set_flag(is_["blacklisted"] & (rng.random(n) < share), name)
        set_flag(is_["high_risk"], "overdue_recent")
        self.flags = flags

        mlc = np.minimum(rng.poisson(1.2, n), 20)
        mlc = np.where(is_["high_risk"], rng.integers(5, 13, n), mlc)
        self.multi_lender_count = mlc.astype(np.uint8)

        band = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.15, 0.25, 0.30, 0.20, 0.10])
        band = np.where(is_["high_risk"], np.maximum(band, 3), band)
        band = np.where(is_["prospect"] & (rng.random(n) < 0.40), 0, band)
        self.credit_band = band.astype(np.uint8)

        days = np.full(n, 65535)
        days = np.where(is_["active"], rng.integers(0, 31, n), days)
        days = np.where(is_["dormant"], rng.integers(90, 721, n), days)
        days = np.where(is_["registered"] | is_["high_risk"] | is_["blacklisted"], rng.integers(0, 366, n), days)
        self.days_since_last_active = days.astype(np.uint16)

        self.finance_app_count = rng.integers(0, 16, n).astype(np.uint8)
        self.region_tier = rng.integers(1, 6, n).astype(np.uint8)

        income = rng.beta(2.0, 2.5, n)
        income = np.where(is_["prospect"] & (rng.random(n) < 0.30), np.nan, income)
        self.income_score = income.astype(np.float32)
        engagement = rng.beta(1.5, 3.0, n)
        engagement = np.where(is_["prospect"] & (rng.random(n) < 0.50), np.nan, engagement)
        self.engagement_score = engagement.astype(np.float32)

        repay = np.full(n, np.nan)
        repay = np.where(is_["active"], rng.uniform(0.6, 1.0, n), repay)
        repay = np.where(is_["dormant"], rng.uniform(0.4, 1.0, n), repay)
        repay = np.where(is_["high_risk"] & (rng.random(n) < 0.5), rng.uniform(0.0, 0.5, n), repay)
        self.repay_score = repay.astype(np.float32)

        approved = is_["active"] | is_["dormant"]
        limit = np.where(approved, rng.integers(10, 501, n), 65535)
        self.credit_limit_hundred_yuan = limit.astype(np.uint16)

        loans = np.full(n, 255)
        loans = np.where(is_["active"], rng.integers(1, 21, n), loans)
        loans = np.where(is_["dormant"], rng.integers(0, 21, n), loans)
        loans = np.where(is_["registered"] | is_["blacklisted"] | is_["high_risk"], rng.integers(0, 3, n), loans)
        self.past_loan_count = loans.astype(np.uint8)

        self.device_price_band = rng.integers(1, 6, n).astype(np.uint8)
        ltv_prior = np.where(is_["prospect"], np.nan, rng.uniform(0, 3000, n))
        self.ltv_prior_yuan = ltv_prior.astype(np.float32)
        self.updated_day = rng.integers(20400, 20418, n).astype(np.uint32)
        self.known = rng.random(n) >= UNKNOWN_SHARE

    def flag(self, name):
        return ((self.flags >> FLAG_BITS[name]) & 1).astype(np.float64)

    def value(self, field):
        """A field as a float column with the store's missing sentinel turned into NaN (src/scoring/features.ts)."""
        raw = getattr(self, field).astype(np.float64)
        sentinel = SCHEMA_MISSING.get(field)
        return raw if sentinel is None else np.where(raw == sentinel, np.nan, raw)

    def feature(self, name):
        if name == "ctx:os_android":
            return (self.os == OS_ANDROID).astype(np.float64)
        if name == "ctx:os_ios":
            return (self.os == OS_IOS).astype(np.float64)
        if name == "ctx:known_device":
            return self.known.astype(np.float64)
        column = self.flag(name[5:]) if name.startswith("flag:") else self.value(name)
        return np.where(self.known, column, np.nan)

    def matrix(self, names):
        return np.column_stack([self.feature(name) for name in names]).astype(np.float32)

    def labels(self, rng):
        """Outcomes drawn from the label rules in data/models/README.md, always from the real device."""
        mlc = self.value("multi_lender_count")
        band = known_or(self.value("credit_band"), 3.5)
        income = known_or(self.value("income_score"), 0.42)
        engagement = known_or(self.value("engagement_score"), 0.25)
        repay = self.value("repay_score")
        repay_known = ~np.isnan(repay)
        limit = known_or(self.value("credit_limit_hundred_yuan"), 60.0 * (6 - band))
        ltv_prior = known_or(self.value("ltv_prior_yuan"), 0.0)

        apply_logit = (-3.0 + 0.12 * self.value("finance_app_count") + 2.0 * engagement
                       + 0.3 * (self.value("device_price_band") - 3) - 0.3 * mlc
                       + 0.8 * (self.flag("registered") * (1 - self.flag("approved")))
                       - 1.2 * self.flag("active_borrower"))
        approve_logit = (0.9 - 0.8 * (band - 3) + 3.0 * (income - 0.45)
                         + np.where(repay_known, 2.5 * (known_or(repay, 0.7) - 0.7), 0.0) - 0.3 * mlc
                         - 4.0 * self.flag("blacklisted") - 1.5 * self.flag("overdue_recent")
                         + 0.6 * self.flag("approved"))
        risk_logit = (-3.2 + 0.35 * mlc + 1.8 * self.flag("overdue_recent")
                      + np.where(repay_known, 4.0 * (0.7 - known_or(repay, 0.7)), 0.4) - 2.5 * (income - 0.45)
                      + 0.4 * (band - 3) + 1.0 * self.flag("blacklisted"))
        ltv = (200 + 1400 * income + 2.0 * limit + np.where(repay_known, 900 * known_or(repay, 0.0), 450)
               + 0.25 * ltv_prior - 120 * mlc + rng.normal(0, 150, self.n))
        return {
            "apply": (rng.random(self.n) < sigmoid(apply_logit)).astype(np.float32),
            "approve": (rng.random(self.n) < sigmoid(approve_logit)).astype(np.float32),
            "risk": (rng.random(self.n) < sigmoid(risk_logit)).astype(np.float32),
            "ltv": np.maximum(ltv, 0.0).astype(np.float32),
        }

    def records(self):
        """Packs every device into the fixed-width record of data/profile-schema.json (little-endian)."""
        out = []
        for i in range(self.n):
            record = bytearray(SCHEMA["recordBytes"])
            for field in SCHEMA["fields"]:
                struct.pack_into("<" + STRUCT_CODES[field["type"]], record, field["offset"], getattr(self, field["name"])[i].item())
            out.append(bytes(record))
        return out


def fnv1a32(text):
    """FNV-1a, 32 bits, over the UTF-8 bytes: the token hash of the logistic format (data/models/README.md)."""
    h = 0x811C9DC5
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def token(name, value):
    return f"{name}=missing" if math.isnan(value) else f"{name}={int(value)}"


def hashed_buckets(population, names, buckets):
    """Bucket index of every (row, hashed feature) token."""
    columns = [population.feature(name) for name in names]
    return np.array([[fnv1a32(token(name, float(column[i]))) % buckets for name, column in zip(names, columns)]
                     for i in range(population.n)], dtype=np.int64)


def round_sig(x):
    return float(f"{x:.7g}")


def fit_logistic(X, y, l2, iterations=25):
    """Newton's method on the L2-regularised log-loss (the bias column, last, is not regularised)."""
    w = np.zeros(X.shape[1])
    penalty = np.full(X.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = sigmoid(X @ w)
        gradient = X.T @ (p - y) + penalty * w
        hessian = (X * (p * (1 - p))[:, None]).T @ X + np.diag(penalty)
        w -= np.linalg.solve(hessian, gradient)
    return w


class ApproveModel:
    """Our logistic format: dense features (imputed when missing) plus hashed categorical tokens, Platt-calibrated."""

    def __init__(self, population, y, rng):
        dense = np.column_stack([population.feature(name) for name in APPROVE_DENSE])
        means = np.nanmean(dense, axis=0)
        stds = np.nanstd(dense, axis=0)
        standardized = (np.where(np.isnan(dense), means, dense) - means) / stds
        buckets = hashed_buckets(population, APPROVE_HASHED, APPROVE_BUCKETS)
        used = np.unique(buckets)
        column_of = {b: i for i, b in enumerate(used)}
        onehot = np.zeros((population.n, len(used)))
        for j in range(buckets.shape[1]):
            onehot[np.arange(population.n), [column_of[b] for b in buckets[:, j]]] += 1.0

        fit_rows = rng.random(population.n) < 0.8
        X = np.column_stack([standardized, onehot, np.ones(population.n)])
        w = fit_logistic(X[fit_rows], y[fit_rows], l2=1.0)
        dense_w = w[: len(APPROVE_DENSE)] / stds
        bucket_w = np.zeros(APPROVE_BUCKETS)
        bucket_w[used] = w[len(APPROVE_DENSE): -1]
        self.bias = round_sig(w[-1] - float(np.sum(dense_w * means)))
        self.dense = [{"feature": name, "weight": round_sig(dense_w[k]), "ifMissing": round_sig(means[k])}
                      for k, name in enumerate(APPROVE_DENSE)]
        self.weights = [round_sig(v) for v in bucket_w]

        # Platt scaling on the held-out fifth: fit p = sigmoid(a * z + b) to the held-out labels.
        z = self.logit(population)[~fit_rows]
        ab = fit_logistic(np.column_stack([z, np.ones(z.shape[0])]), y[~fit_rows], l2=0.0)
        self.platt = (round_sig(ab[0]), round_sig(ab[1]))

    def logit(self, population):
        z = np.full(population.n, self.bias)
        for entry in self.dense:
            column = population.feature(entry["feature"])
            z += entry["weight"] * np.where(np.isnan(column), entry["ifMissing"], column)
        for j in hashed_buckets(population, APPROVE_HASHED, APPROVE_BUCKETS).T:
            z += np.asarray(self.weights)[j]
        return z

    def predict(self, population):
        a, b = self.platt
        return sigmoid(a * self.logit(population) + b)

    def to_json(self):
        return {
            "format": "rta-logistic/1",
            "name": "approve",
            "version": MODEL_VERSION,
            "description": "P(approved | applied): passes credit review.",
            "bias": self.bias,
            "dense": self.dense,
            "hashed": {"hash": "fnv1a32", "buckets": APPROVE_BUCKETS, "features": APPROVE_HASHED, "weights": self.weights},
            "calibration": {"method": "platt", "a": self.platt[0], "b": self.platt[1]},
        }


def train_gbdt(name, population, y):
    params = GBDT_PARAMS[name]
    train = xgb.DMatrix(population.matrix(FEATURES[name]), label=y, feature_names=FEATURES[name], missing=np.nan)
    regression = params["objective"] == "reg:squarederror"
    booster = xgb.train(
        {"objective": params["objective"], "max_depth": params["max_depth"], "eta": params["eta"],
         "tree_method": "hist", "min_child_weight": 5, "seed": SEED, "nthread": 1,
         "base_score": float(np.mean(y)) if regression else 0.5},
        train, num_boost_round=params["rounds"])
    booster.save_model(os.path.join(MODELS_DIR, params["file"]))
    return booster


def predict_gbdt(booster, name, population):
    matrix = xgb.DMatrix(population.matrix(FEATURES[name]), feature_names=FEATURES[name], missing=np.nan)
    return booster.predict(matrix)


def fixture_population(rng, n):
    """Held-out devices, plus extra NaNs sprinkled over profile features so every default branch gets exercised."""
    population = Population(rng, n)
    for field in ("income_score", "engagement_score", "repay_score", "ltv_prior_yuan"):
        column = getattr(population, field)
        column[rng.random(n) < 0.15] = np.nan
    for field in ("multi_lender_count", "credit_band", "finance_app_count", "days_since_last_active", "past_loan_count",
                  "credit_limit_hundred_yuan", "region_tier", "device_price_band"):
        column = getattr(population, field)
        column[rng.random(n) < 0.10] = SCHEMA_MISSING[field]
    return population


def nullable(values):
    return [None if math.isnan(v) else float(v) for v in values]


def write_json(path, value, indent=None):
    with open(path, "w") as out:
        json.dump(value, out, indent=indent, separators=None if indent else (",", ":"))
        out.write("\n")


def main():
    rng = np.random.default_rng(SEED)
    population = Population(rng, TRAIN_ROWS)
    labels = population.labels(rng)

    boosters = {name: train_gbdt(name, population, labels[name]) for name in GBDT_PARAMS}
    approve = ApproveModel(population, labels["approve"], rng)
    write_json(os.path.join(MODELS_DIR, "approve.json"), approve.to_json(), indent=2)

    entries = []
    for name in ("apply", "approve", "risk", "ltv"):
        if name == "approve":
            entry = {"name": name, "version": MODEL_VERSION, "format": "logistic-json", "file": "approve.json",
                     "output": "probability", "description": "P(approved | applied): passes credit review.",
                     "features": APPROVE_DENSE + APPROVE_HASHED}
        else:
            params = GBDT_PARAMS[name]
            entry = {"name": name, "version": MODEL_VERSION, "format": "xgboost-json", "file": params["file"],
                     "output": "yuan" if params["objective"] == "reg:squarederror" else "probability",
                     "description": params["description"], "features": FEATURES[name]}
        entries.append(entry)
    write_json(os.path.join(MODELS_DIR, "manifest.json"),
               {"description": "Demo models, written by data/models/train_demo_models.py; see data/models/README.md.",
                "profileSchemaVersion": SCHEMA["version"], "models": entries}, indent=2)

    fixtures = fixture_population(rng, FIXTURE_ROWS)
    for name, booster in boosters.items():
        rows = fixtures.matrix(FEATURES[name])
        write_json(os.path.join(FIXTURES_DIR, f"{name}-xgboost-predictions.json"), {
            "model": f"data/models/{GBDT_PARAMS[name]['file']}",
            "xgboostVersion": xgb.__version__,
            "features": FEATURES[name],
            "rows": [nullable(row) for row in rows],
            "predictions": [float(p) for p in predict_gbdt(booster, name, fixtures)],
        })

    devices = fixture_population(rng, FIXTURE_DEVICES)
    scores = {name: predict_gbdt(booster, name, devices) for name, booster in boosters.items()}
    scores["approve"] = approve.predict(devices)
    write_json(os.path.join(FIXTURES_DIR, "devices-scores.json"), {
        "note": "Records packed per data/profile-schema.json; expected scores from XGBoost's predict and a NumPy "
                "evaluation of approve.json, on features built by the training script.",
        "models": ["apply", "approve", "risk", "ltv"],
        "devices": [{"record": record.hex(), "os": int(devices.os[i]), "known": bool(devices.known[i]),
                     "scores": [float(scores[m][i]) for m in ("apply", "approve", "risk", "ltv")]}
                    for i, record in enumerate(devices.records())],
    })

    for name, y in labels.items():
        print(f"{name}: label mean {float(np.mean(y)):.4f}")
    print("approve platt a,b =", approve.platt)


if __name__ == "__main__":
    main()
