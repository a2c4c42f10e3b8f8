"""Offer lifecycle, request context and list-wise comparisons within the request."""

from offer_ranker.features.base import Feature

_N, _C, _R = "numeric", "categorical", "at request"

LIFECYCLE = (
    Feature("offer_age_hours", "offer", _N, _R, "Hours since the offer went live.", "offer_lifecycle"),
    Feature("offer_hours_to_expiry", "offer", _N, _R, "Hours until the offer expires.", "offer_lifecycle"),
    Feature("offer_payout", "offer", _N, _R, "What the partner pays per conversion.", "offer_lifecycle"),
    Feature("offer_category", "offer", _C, _R, "The offer's category.", "offer_lifecycle"),
    Feature("offer_partner", "offer", _C, _R, "The partner behind the offer.", "offer_lifecycle"),
)
CONTEXT = (
    Feature("ctx_hour", "request", _N, _R, "Hour of the day (UTC) of the page view.", "context"),
    Feature("ctx_weekday", "request", _N, _R, "Day of the week of the page view (0 = Sunday).", "context"),
    Feature("ctx_device", "request", _C, _R, "The device the page was viewed on.", "context"),
    Feature("ctx_country", "request", _C, _R, "The country the page was viewed from.", "context"),
    Feature("ctx_surface", "request", _C, _R, "Where in the app the offers were shown.", "context"),
)
LISTWISE = (
    Feature("lw_candidates", "request", _N, _R, "How many offers competed for the page.", "listwise"),
    Feature("lw_payout_rel", "request×offer", _N, _R,
            "The offer's payout relative to the average of the offers on the page.", "listwise"),
    Feature("lw_ctr_rel", "request×offer", _N, _R,
            "The offer's click rate relative to the average of the offers on the page.", "listwise"),
)
FEATURES = LIFECYCLE + CONTEXT + LISTWISE
