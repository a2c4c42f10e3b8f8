"""Offer text for the short-lived scenario: a ``title`` and a ``description`` written from the
offer's latent attributes (category, quality, clickbait, reward type, partner) with synonyms and
noise, so the words carry signal without naming the answer.

* the category appears as one of several synonyms, and one offer in ten borrows another
  category's word (copywriters stretch);
* quality shows only through the odds of praise ("award-winning") against plain words
  ("standard"): a good offer is more likely to be praised, never certain to be;
* clickbait offers (high attraction, poor conversion) shout more often ("act now", "!!");
* the reward type shows through its phrases, each with synonyms;
* the description adds filler sentences any offer could carry.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

CATEGORY_WORDS = {
    "finance": ("credit card", "savings account", "banking app", "personal loan"),
    "insurance": ("home insurance", "travel cover", "pet insurance", "car insurance"),
    "telecom": ("mobile plan", "broadband", "SIM deal", "5G data plan"),
    "streaming": ("streaming service", "movie subscription", "music streaming", "series pass"),
    "gaming": ("game pass", "gaming bundle", "in-game credits", "console subscription"),
    "travel": ("city break", "flight deal", "hotel stay", "weekend getaway"),
    "food": ("meal kit", "food delivery", "restaurant voucher", "grocery box"),
    "fitness": ("gym membership", "yoga classes", "fitness app", "running club"),
    "shopping": ("fashion store", "online shop", "outlet voucher", "shopping credit"),
    "education": ("online course", "language lessons", "coding bootcamp", "study app"),
    "energy": ("electricity plan", "solar panels", "green energy deal", "heat pump"),
    "mobility": ("e-scooter pass", "car sharing", "bike rental", "taxi credit"),
    "beauty": ("skincare set", "salon visit", "beauty box", "fragrance sample"),
    "pets": ("pet food box", "vet plan", "dog toys", "cat supplies"),
    "news": ("news subscription", "digital magazine", "newspaper pass", "podcast plus"),
}
PRAISE = ("award-winning", "top-rated", "premium", "bestselling", "much-loved", "five-star")
PLAIN = ("standard", "basic", "simple", "regular", "everyday", "classic")
SHOUT = ("act now", "today only", "unbelievable deal", "last chance", "don't miss out")
REWARD_WORDS = (
    ("cashback", "money back", "cash reward", "refund on your first order"),  # cashback
    ("off", "discount", "price cut", "reduced price"),  # discount
    ("free trial", "try it free", "first month free", "no-cost trial"),  # trial
)
FILLER = ("Terms apply.", "Available while stocks last.", "Sign up in two minutes.", "Cancel any time.",
          "Loved by customers across the Nordics.", "No hidden fees.", "Offer valid for new customers.",
          "Easy to get started.", "See the partner's site for details.", "Limited availability.")


def offer_text(rng: np.random.Generator, categories: tuple[str, ...], partners: tuple[str, ...],
               category: np.ndarray, partner: np.ndarray, quality: np.ndarray, clickbait: np.ndarray,
               reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(O,) titles and (O,) descriptions (object arrays of str) of the offers described by the
    (O,) attribute arrays; ``quality`` on the attraction-logit scale."""
    O = category.size
    z = (quality - quality.mean()) / max(float(quality.std()), 1e-9)
    borrowed = rng.random(O) < 0.1
    word_category = np.where(borrowed, rng.integers(len(categories), size=O), category)
    praised = rng.random(O) < expit(1.5 * z)  # the better the offer, the likelier the praise
    shouting = rng.random(O) < np.where(clickbait, 0.7, 0.1)
    percent = rng.choice([10, 15, 20, 25, 30, 40, 50], O)
    titles, descriptions = np.empty(O, object), np.empty(O, object)
    for i in range(O):
        thing = _pick(rng, CATEGORY_WORDS[categories[word_category[i]]])
        adjective = _pick(rng, PRAISE if praised[i] else PLAIN)
        reward_phrase = _reward(rng, int(reward[i]), int(percent[i]))
        brand = partners[partner[i]].replace("_", " ").title()
        title = f"{adjective.capitalize()} {thing}: {reward_phrase}"
        if shouting[i]:
            title = f"{title} - {_pick(rng, SHOUT)}!!"
        sentences = [f"{brand} offers a {adjective} {thing} with {reward_phrase}."]
        if rng.random() < 0.5:  # a second, independent hint of quality
            sentences.append(f"Rated {'highly' if rng.random() < expit(1.5 * z[i]) else 'fairly'} by its users.")
        sentences += list(rng.choice(FILLER, 2, replace=False))
        titles[i], descriptions[i] = title, " ".join(sentences)
    return titles, descriptions


def _reward(rng: np.random.Generator, reward: int, percent: int) -> str:
    phrase = _pick(rng, REWARD_WORDS[reward])
    return f"{percent}% {phrase}" if reward in (0, 1) and rng.random() < 0.6 else phrase


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]
