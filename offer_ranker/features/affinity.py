"""User × category, user × partner and user × offer history."""

from offer_ranker.features.base import Feature

_N, _L = "numeric", "lifetime"

USER_CATEGORY = (
    Feature("uc_impressions", "user×category", _N, _L, "How often the user was shown offers of this category.", "user_category"),
    Feature("uc_clicks", "user×category", _N, _L, "How often the user clicked offers of this category.", "user_category"),
    Feature("uc_ctr", "user×category", _N, _L,
            "The user's click rate on this category, pulled towards the category's typical rate.", "user_category"),
    Feature("uc_click_share", "user×category", _N, _L,
            "Share of the user's earlier clicks that went to this category.", "user_category"),
)
USER_PARTNER = (
    Feature("up_impressions", "user×partner", _N, _L, "How often the user was shown this partner's offers.", "user_partner"),
    Feature("up_clicks", "user×partner", _N, _L, "How often the user clicked this partner's offers.", "user_partner"),
    Feature("up_conversions", "user×partner", _N, _L, "How often the user converted on this partner's offers.", "user_partner"),
)
USER_OFFER = (
    Feature("uo_impressions", "user×offer", _N, _L, "How often the user was shown this very offer before.", "user_offer"),
    Feature("uo_clicks", "user×offer", _N, _L, "How often the user clicked this very offer before.", "user_offer"),
    Feature("uo_conversions", "user×offer", _N, _L, "How often the user converted on this very offer before.", "user_offer"),
    Feature("uo_hours_since_seen", "user×offer", _N, _L, "Hours since the user was last shown this offer.", "user_offer"),
)
FEATURES = USER_CATEGORY + USER_PARTNER + USER_OFFER
