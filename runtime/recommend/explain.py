"""Explanations whose label describes both the seed items and the recommended item.

Rule (:func:`explain_item`), for a user, a recommended item and the component (layer) that
contributed most to its score:

1. **Contributions.** Every member of every interest of the user gets a contribution to the item:
   its collaborative weight towards the item for the collaborative layers (times its recency weight for the
   short-term layer), its cosine to the item otherwise (interest and category layers).
2. **Interest.** Interests whose positive contribution is at least half of the largest one are
   candidates (summed for EASE, the best member for cosines). Among them, the one whose leading
   contributors (its five strongest, each at least a tenth of its strongest) share the item's topic
   at the finest level of the topic tree wins; ties go to the larger contribution.
3. **Label and seeds.** The first seed is the strongest contributor that shares that topic with
   the item; the second is the strongest contributor of all when that is another item, else the
   next one sharing the topic. The label is that topic's name: it holds the item and the first
   seed. It is the interest's own label (:func:`~tastemap.runtime.interests.profiles.interest_label`, what most
   of its members share) when the item falls in it. When no contributor shares any topic with the
   item, the label falls back to the item's own fine topic, the seeds are the two strongest
   contributors, and the explanation says that the label is the item's topic, not the seeds'.

A mixed interest (no topic shared by most of its members) is named as such ("a mix of ...").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tastemap.runtime.interests.profiles import interest_label, shared_topic
from tastemap.runtime.recommend.candidates import gather

CANDIDATE_SHARE = 0.5
LEADING = 5
LEADING_SHARE = 0.1


@dataclass(frozen=True)
class Explanation:
    """Why an item was recommended.

    ``interest`` is the rank of the user's interest (0 = most important; -1 when the user has
    none, e.g. a text cold start); ``topic`` the label shown, the name of the topic at tree level
    ``topic_level`` (0 = coarse) with id ``topic_id`` that holds the item and, when ``agrees``, at
    least one seed; ``interest_label`` what the interest's members share; ``layer`` the component
    that contributed most (``long-term``, ``short-term``, ``interest``, ``category`` or
    ``cold-start``); ``seed_item_ids``/``seed_titles`` the items that led to it and ``segment``
    the segment label used for a cold start.
    """

    interest: int
    topic: str
    layer: str
    seed_item_ids: tuple = ()
    seed_titles: tuple = ()
    segment: str | None = None
    interest_label: str = ""
    topic_level: int = -1
    topic_id: int = -1
    agrees: bool = True

    def describe(self) -> str:
        seeds = f" (from {', '.join(map(str, self.seed_titles))})" if self.seed_titles else ""
        if not self.agrees and self.interest_label:
            text = f"because you like: {self.interest_label}{seeds}; this one is {self.topic}"
        else:
            text = f"because you like: {self.topic}{seeds}"
            if self.interest_label and self.interest_label != self.topic:
                text += f", within your interest in {self.interest_label}"
        if self.segment:
            text += f"; people like you: {self.segment}"
        return text


def explain_item(recommender, user: int, item: int, state, component: str, layer: str,
                 segment: str | None) -> Explanation:
    """The :class:`Explanation` of ``item`` for user row ``user`` of ``state`` (see the module
    docstring); ``component`` names the layer that contributed most."""
    return explain_items(recommender, user, np.array([item]), state, [component], [layer], segment)[0]


def explain_items(recommender, user: int, items: np.ndarray, state, components: list[str], layers: list[str],
                  segment: str | None) -> list[Explanation]:
    """:func:`explain_item` for several ``items`` of one user at once (``components`` and
    ``layers`` aligned with them): the user's members and their contributions to every item are
    computed in one product per kind."""
    profiler = recommender.profiler_
    tree, item_topics = profiler.topic_tree_, profiler.item_topics_
    interests = state.interests
    lo, hi = interests.indptr[user], interests.indptr[user + 1]
    items = np.asarray(items, np.int64)
    fine = len(tree.levels) - 1
    if hi == lo:
        return [Explanation(-1, tree.fine.names[int(item_topics[item, fine])], layer, segment=segment,
                            topic_level=fine, topic_id=int(item_topics[item, fine])) for item, layer in zip(items, layers)]
    members = interests.members[interests.member_indptr[lo]: interests.member_indptr[hi]]
    owner = np.repeat(np.arange(hi - lo), interests.size[lo:hi])
    vectors = profiler.item_vectors_
    cosines = vectors[members] @ vectors[items].T  # [n_members, n_items]
    collaborative = None
    if recommender.collaborative_ is not None and any(c in ("long_term", "short_term") for c in components):
        model = recommender.collaborative_
        collaborative = np.where(members[:, None] == items[None, :], 0.0, model.left[members] @ model.right[items].T)
        recency = gather(state.recency[user : user + 1], members)  # the members' recency weights
    labels: dict[int, tuple] = {}  # interest -> (its label, what its members share): once per user, not per item
    out = []
    for column, (item, component, layer) in enumerate(zip(items, components, layers)):
        if component in ("long_term", "short_term") and collaborative is not None:
            contribution = collaborative[:, column] * (recency if component == "short_term" else 1.0)
            strength = np.bincount(owner, weights=np.maximum(contribution, 0.0), minlength=hi - lo)
        else:
            contribution = cosines[:, column]
            strength = np.full(hi - lo, -np.inf)
            np.maximum.at(strength, owner, contribution)
        if not np.any(strength > 0):  # nothing pulls towards the item: the closest members, every one counting
            contribution = cosines[:, column] - cosines[:, column].min() + 1e-6
            strength = np.zeros(hi - lo)
            np.maximum.at(strength, owner, contribution)
        out.append(_explanation(recommender, int(item), owner, members, contribution, strength, layer, segment,
                                labels))
    return out


def _explanation(recommender, item: int, owner, members, contribution, strength, layer: str,
                 segment: str | None, labels: dict) -> Explanation:
    profiler = recommender.profiler_
    tree, item_topics = profiler.topic_tree_, profiler.item_topics_
    own = item_topics[item]
    best, level, seeds = _choose(owner, members, contribution, strength, item_topics, own)
    if best not in labels:
        chosen = members[owner == best]
        labels[best] = (interest_label(chosen, item_topics, tree), shared_topic(chosen, item_topics))
    label_of_interest, (shared_level, shared, _) = labels[best]
    agrees = level >= 0
    if not agrees:
        level = len(tree.levels) - 1
    topic = int(own[level])
    name = label_of_interest if (shared_level == level and shared == topic) else tree.levels[level].names[topic]
    seeds = list(seeds)
    return Explanation(
        interest=int(best),
        topic=name,
        layer=layer,
        seed_item_ids=tuple(recommender.item_ids_[seeds].tolist()),
        seed_titles=tuple(recommender.titles_[seeds].tolist()),
        segment=segment,
        interest_label=label_of_interest,
        topic_level=int(level),
        topic_id=topic,
        agrees=agrees,
    )


def _choose(owner, members, contribution, strength, item_topics, own) -> tuple[int, int, np.ndarray]:
    """``(interest, agreement level or -1, seed items)`` by the rule of the module docstring."""
    top = float(strength.max())
    candidates = np.flatnonzero(strength >= CANDIDATE_SHARE * top) if top > 0 else np.array([int(np.argmax(strength))])
    picks = []
    for interest in candidates:
        mine = np.flatnonzero((owner == interest) & (contribution > 0))
        mine = mine[np.argsort(-contribution[mine], kind="stable")]
        leading = mine[:LEADING]
        if leading.size:
            leading = leading[contribution[leading] >= LEADING_SHARE * contribution[leading[0]]]
        level, agreeing = -1, leading[:0]
        for depth in range(item_topics.shape[1] - 1, -1, -1):
            agreeing = leading[item_topics[members[leading], depth] == own[depth]]
            if agreeing.size:
                level = depth
                break
        if level < 0:
            seeds = members[leading[:2]]
        elif agreeing[0] == leading[0]:
            seeds = members[agreeing[:2]]
        else:  # the strongest member sharing the item's topic, then the strongest of all
            seeds = members[[agreeing[0], leading[0]]]
        picks.append((level, float(strength[interest]), -int(interest), seeds))
    level, _, negative, seeds = max(picks, key=lambda p: (p[0], p[1], p[2]))
    return -negative, level, seeds


def item_topic_explanation(recommender, item: int, layer: str, segment: str | None) -> Explanation:
    """An explanation naming only the item's own fine topic (a user without interests, or a text
    cold start)."""
    tree = recommender.profiler_.topic_tree_
    fine = len(tree.levels) - 1
    topic = int(recommender.profiler_.item_topics_[item, fine])
    return Explanation(-1, tree.fine.names[topic], layer, segment=segment, topic_level=fine, topic_id=topic)
