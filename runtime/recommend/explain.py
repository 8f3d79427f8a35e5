"""Explanations that name what the recommended item and its seed items share.

Rule (:func:`explain_item`), for a user, a recommended item and the component (layer) that
contributed most to its score:

1. **Contributions.** Every member of every interest of the user gets a contribution to the item:
   its collaborative weight towards the item for the collaborative layers (times its recency weight for the
   short-term layer), its cosine to the item otherwise (interest and category layers).
2. **Leading contributors.** Interests whose positive contribution is at least half of the largest
   one are candidates (summed for EASE, the best member for cosines); their leading contributors
   are each one's five strongest members, each at least a tenth of its strongest.
3. **Common ground.** Of the leading contributors, the first seed is the one whose common ground
   with the item (:meth:`~tastemap.runtime.recommend.ground.ItemTerms.shared`) is most specific:
   naming a category first, then a keyword phrase (a tag, a title's words), then rarer
   categories; ties go to the larger contribution. The explanation names that ground, at most
   one phrase and three terms, categories rarest first (the deepest node of a path: ``crime``
   for ``Books > Fiction > Crime``): "because you like time travel, sci-fi and comedy, as in Back
   to the Future Part III". The second seed is the next contributor of the same interest
   holding the first term. Without a shared term, a seed in the item's topic at the finest level
   names that topic's label, when the label is phrases (not medoid titles). When they share
   nothing nameable, the explanation names the seeds only: "because you liked Back to the
   Future Part III"; the seeds are then the strongest contributors.

Every seed contributes positively to the item's score, so removing the seeds from the history
lowers it (the deletion test of ``tastemap.bench.interests``). An interest's own label
(:func:`interest_name`) is the categories most of its members carry, else the topic they share,
else its medoid's title; never a mix of labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tastemap.runtime.interests.labels import display_title, is_medoid_label
from tastemap.runtime.interests.profiles import shared_topic
from tastemap.runtime.recommend.ground import ItemTerms, item_terms, join_words
from tastemap.runtime.recommend.candidates import csr_rows, gather

CANDIDATE_SHARE = 0.5
LEADING = 5
LEADING_SHARE = 0.1
MAJORITY = 0.5  # an interest is named by the categories more than half of its members carry


@dataclass(frozen=True)
class Explanation:
    """Why an item was recommended.

    ``interest`` is the rank of the user's interest (0 = most important; -1 when the user has
    none, e.g. a text cold start); ``topic`` the common ground named: the categories the item and
    its first seed share, or the label of the topic at tree level ``topic_level`` (0 = coarse)
    with id ``topic_id`` that holds both; ``agrees`` is False when they share nothing nameable
    (``topic`` is then empty and the seeds alone explain the item; ``topic_level`` and
    ``topic_id`` give the item's fine topic). Without seeds (no interests, a text cold start)
    ``topic`` is the item's fine topic. ``interest_label`` is what the interest's members share
    (:func:`interest_name`); ``layer`` the component
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
    audience: str = ""
    """For a cold start from user attributes: the groups the item is popular with."""

    def describe(self) -> str:
        if self.audience:
            liked = f" (and you liked {', '.join(map(str, self.seed_titles))})" if self.seed_titles else ""
            return f"popular with {self.audience}{liked}"
        seeds = " and ".join(display_title(t) for t in self.seed_titles)
        if self.seed_titles and self.agrees:
            text = f"because you like {self.topic}, as in {seeds}"
        elif self.seed_titles:
            text = f"because you liked {seeds}"
        elif is_medoid_label(self.topic):
            text = f"because it is {self.topic}"
        else:
            text = f"because you like {self.topic}"
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
        recency = gather(csr_rows(state.recency, [user]), members)  # the members' recency weights
    labels: dict[int, tuple] = {}  # interest -> (its label, what its members share): once per user, not per item
    terms = item_terms(profiler)
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
        out.append(_explanation(recommender, terms, int(item), owner, members, contribution, strength, layer,
                                segment, labels))
    return out


def _explanation(recommender, terms: ItemTerms, item: int, owner, members, contribution, strength, layer: str,
                 segment: str | None, labels: dict) -> Explanation:
    profiler = recommender.profiler_
    tree, item_topics = profiler.topic_tree_, profiler.item_topics_
    leading = _leading(owner, contribution, strength)
    shared = [terms.shared(item, int(members[m])) for m in leading]
    fine = len(tree.levels) - 1
    level, topic, ground = fine, int(item_topics[item, fine]), ""
    if any(shared):
        first = max(range(leading.size), key=lambda j: (shared[j].specificity, contribution[leading[j]], -j))
        ground = join_words(shared[first].words)
        lead_word = shared[first].words[0]
        others = [j for j in range(leading.size) if j != first and lead_word in shared[j].words]
    else:
        first, others = 0, list(range(1, leading.size))
        in_topic = [j for j in range(leading.size)
                    if item_topics[members[leading[j]], fine] == topic and not is_medoid_label(tree.fine.names[topic])]
        if in_topic:
            first, others = in_topic[0], in_topic[1:]
            ground = tree.fine.names[topic]
    best = int(owner[leading[first]])
    others = [j for j in others if owner[leading[j]] == best]  # the seeds come from one interest
    seeds = members[leading[[first, *others[:1]]]]
    if best not in labels:
        labels[best] = interest_name(members[owner == best], profiler, terms)
    return Explanation(
        interest=best,
        topic=ground,
        layer=layer,
        seed_item_ids=tuple(recommender.item_ids_[seeds].tolist()),
        seed_titles=tuple(recommender.titles_[seeds].tolist()),
        segment=segment,
        interest_label=labels[best],
        topic_level=level,
        topic_id=topic,
        agrees=bool(ground),
    )


def _leading(owner, contribution, strength) -> np.ndarray:
    """Positions (into the members) of the leading contributors of the candidate interests, by
    decreasing contribution (see the module docstring)."""
    top = float(strength.max())
    candidates = np.flatnonzero(strength >= CANDIDATE_SHARE * top) if top > 0 else np.array([int(np.argmax(strength))])
    leading = []
    for interest in candidates:
        mine = np.flatnonzero((owner == interest) & (contribution > 0))
        mine = mine[np.argsort(-contribution[mine], kind="stable")][:LEADING]
        if mine.size:
            leading.append(mine[contribution[mine] >= LEADING_SHARE * contribution[mine[0]]])
    if not leading:  # nothing positive: the strongest member of the strongest interest
        leading = [np.flatnonzero(owner == int(np.argmax(strength)))[:1]]
    leading = np.concatenate(leading)
    return leading[np.argsort(-contribution[leading], kind="stable")]


def interest_name(members: np.ndarray, profiler, terms: ItemTerms | None = None) -> str:
    """What an interest's members (catalog rows, most central first) share: the categories more
    than half of them carry (deepest, most widely held first, at most two), else the label of the
    topic more than half of them fall in, else ``like <title>`` of its most central member."""
    terms = terms if terms is not None else item_terms(profiler)
    members = np.asarray(members, np.int64)
    rows = csr_rows(terms.items, members)
    held = np.bincount(rows.indices, weights=rows.data, minlength=terms.names.size)
    common = np.flatnonzero(held > MAJORITY * members.size)
    common = np.setdiff1d(common, terms.parents[common])
    if common.size:
        return join_words([str(terms.names[n]) for n in common[np.lexsort((common, -held[common]))]][:2])
    tree = profiler.topic_tree_
    level, topic, _ = shared_topic(members, profiler.item_topics_)
    if level >= 0 and not is_medoid_label(tree.levels[level].names[topic]):
        return tree.levels[level].names[topic]
    return f"like {display_title(profiler.item_titles_[members[0]])}"


def item_topic_explanation(recommender, item: int, layer: str, segment: str | None) -> Explanation:
    """An explanation naming only the item's own fine topic (a user without interests, or a text
    cold start)."""
    tree = recommender.profiler_.topic_tree_
    fine = len(tree.levels) - 1
    topic = int(recommender.profiler_.item_topics_[item, fine])
    return Explanation(-1, tree.fine.names[topic], layer, segment=segment, topic_level=fine, topic_id=topic)
