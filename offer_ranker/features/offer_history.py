from offer_ranker.features.base import Feature

GROUP = "offer_history"
_N, _L, _D = "numeric", "lifetime", "decayed, 1-day time constant"

FEATURES = (
    Feature("offer_impressions", "offer", _N, _L, "How often the offer was shown before.", GROUP),
    Feature("offer_clicks", "offer", _N, _L, "How often the offer was clicked before.", GROUP),
    Feature("offer_conversions", "offer", _N, _L, "How often the offer converted before.", GROUP),
    Feature("offer_impressions_recent", "offer", _N, _D, "Recent showings of the offer, older ones counting less.", GROUP),
    Feature("offer_clicks_recent", "offer", _N, _D, "Recent clicks on the offer, older ones counting less.", GROUP),
    Feature("offer_ctr", "offer", _N, _L,
            "The offer's click rate so far, pulled towards its category's typical rate when it has little history.", GROUP, monotone=1),
    Feature("offer_ctr_recent", "offer", _N, _D,
            "The offer's recent click rate, pulled towards its category's typical rate.", GROUP, monotone=1),
    Feature("offer_cvr", "offer", _N, _L,
            "Share of the offer's clicks that converted, pulled towards its category's typical rate.", GROUP),
    Feature("offer_coec", "offer", _N, _L,
            "The offer's clicks relative to what its screen positions would predict (1 = average).", GROUP, monotone=1),
)
