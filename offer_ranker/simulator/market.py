"""The fixed shape of the simulated market: time units, slate sizes, and every vocabulary (categories,
countries, devices, surfaces, plans, age bands, reward types) with the shares and effects indexed
by it.

Codes everywhere in the simulator are indices into these tuples; an array named after a
vocabulary (``COUNTRY_SHARE``, ``SURFACE_EFFECT``, …) has one entry per label, in the same order.
Effects are on the click (attraction) or conversion logit scale.
"""

from __future__ import annotations

import numpy as np

US = 1_000_000  # all times are int64 microseconds since the epoch, naive UTC
DAY = 86_400 * US
MIN_SLATE, MAX_SLATE = 10, 20  # candidates per request

CATEGORIES = ("finance", "insurance", "telecom", "streaming", "gaming", "travel", "food", "fitness",
              "shopping", "education", "energy", "mobility", "beauty", "pets", "news")
CATEGORY_PRICE = np.array([10, 25, 30, 12, 15, 150, 25, 35, 50, 40, 60, 20, 30, 25, 10.0])  # typical price
CATEGORY_PAYOUT = np.array([40, 30, 25, 8, 5, 20, 6, 10, 7, 15, 30, 8, 6, 5, 3.0])  # median payout
COUNTRIES = ("SE", "NO", "DK", "FI", "DE", "NL")
COUNTRY_SHARE = np.array([0.28, 0.14, 0.13, 0.12, 0.20, 0.13])
COUNTRY_PRICE = np.array([1.0, 1.15, 1.1, 0.95, 0.9, 0.95])  # price level relative to SE
DEVICES = ("ios", "android", "web")
SURFACES = ("home", "search", "account")
SURFACE_SHARE = np.array([0.5, 0.2, 0.3])
SURFACE_EFFECT = np.array([0.0, 0.25, -0.2])  # logit: users on search are looking for something
PLANS = ("free", "plus", "premium")
PLAN_SHARE = np.array([0.65, 0.25, 0.10])
PLAN_CONVERSION = np.array([-0.15, 0.05, 0.3])
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARE = np.array([0.18, 0.30, 0.24, 0.16, 0.12])
AGE_CLICKINESS = np.array([0.15, 0.1, 0.0, -0.1, -0.2])
REWARD_TYPES = ("cashback", "discount", "trial")
REWARD_EFFECT = np.array([0.15, 0.0, -0.1])
# Relative traffic by hour of day (UTC ≈ local time here): quiet nights, lunch bump, evening peak.
HOUR_SHARE = np.array([1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 3.5, 3.6, 3.8,
                       4.5, 4.2, 3.8, 3.8, 4.0, 4.5, 5.5, 6.5, 7.0, 6.2, 4.5, 2.5])
HOUR_SHARE = HOUR_SHARE / HOUR_SHARE.sum()
