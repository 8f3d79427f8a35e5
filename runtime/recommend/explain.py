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
   categories; ties go to the larger contribution. When that ground is empty or common
   (categories alone, as widely held as one category on over 6% of the catalogue: ``comedy``,
   ``romance and comedy``), every member contributing positively is a candidate too, and a
   ground that is not common wins (then the more specific; ties: a leading contributor, then the
   larger contribution). The explanation names that ground, at most one phrase and three terms,
   categories rarest first (the deepest node of a path: ``crime`` for ``Books > Fiction >
   Crime``): "because you like time travel, sci-fi and comedy, as in Back to the Future Part
   III". The second seed is the next candidate of the same interest sharing one of the named
   terms with the item. Without a shared term, a leading contributor in the item's topic at the
   finest level names that topic's label, when the label is phrases (not medoid titles). When
   they share nothing nameable, the explanation names the seeds only: "because you liked Back to
   the Future Part III"; the seeds are then the strongest contributors.

Every seed contributes positively to the item's score, so removing the seeds from the history
lowers it (the deletion test of ``tastemap.bench.interests``). An interest's own label
(:func:`interest_name`) is the categories most of its members carry, else the topic they share,
else its medoid's title (quoted, with its year); never a mix of labels.

Measured on MovieLens (``python -m tastemap.bench.explicit``, top 10 of every user; deletion
test on 1,000 explanations of one fitted model), the share of the most frequent ground and the
share of explanations whose score drops without their seeds:

=====================================================================  ========  =========
first seed                                                             top       drops
=====================================================================  ========  =========
most specific ground among the leading contributors                    7.1%      95.4%
any positive contributor, four terms                                   4.9%      88.8%
leading; a ground used for a higher item of the list demoted           8.0%
leading; a common ground widened to contributors >= 5% of the top      5.8%      92.3%
the same, widened to every positive contributor, four terms            4.9%      94.3%
  (second seed: sharing any named term)
**leading; a common ground widened to every positive contributor**     **4.9%**  **95.3%**
  (common below 2.8 nats; second seed: sharing any named term)
=====================================================================  ========  =========

:func:`explain_user_items` applies the rule item by item; :func:`explain_items` applies it to the
recommendations of many users at once, vectorised: the same explanations at about a quarter of
the cost (25 µs of CPU an item for 512 users at 10,000 items, against 95 µs; see
``docs/explicit-interests.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from tastemap.runtime.interests.labels import display_title, is_medoid_label, quoted_title
from tastemap.runtime.interests.profiles import shared_topic
from tastemap.runtime.recommend.ground import ItemTerms, SharedTerms, item_terms, join_words
from tastemap.runtime.recommend.candidates import Rows, gather, inner_products_by_index, row_positions

CANDIDATE_SHARE = 0.5
LEADING = 5
LEADING_SHARE = 0.1
MAJORITY = 0.5  # an interest is named by the categories more than half of its members carry


@dataclass(frozen=True, slots=True)
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
        return describe(self.topic, self.seed_titles, self.agrees, self.segment, self.audience)


def describe(topic: str, seed_titles: tuple, agrees: bool, segment: str | None, audience: str = "") -> str:
    """The sentence of an :class:`Explanation` with these fields."""
    if audience:
        liked = f" (and you liked {', '.join(map(str, seed_titles))})" if seed_titles else ""
        return f"popular with {audience}{liked}"
    seeds = " and ".join(display_title(t) for t in seed_titles)
    if seed_titles and agrees:
        text = f"because you like {topic}, as in {seeds}"
    elif seed_titles:
        text = f"because you liked {seeds}"
    elif is_medoid_label(topic):
        text = f"because it is {topic}"
    else:
        text = f"because you like {topic}"
    if segment:
        text += f"; people like you: {segment}"
    return text


@dataclass(frozen=True)
class Explanations(Sequence):
    """The explanations of many recommendations as columns, each a list (each one's seeds a
    list; ``segment`` and ``topic_level`` shared): a batch builds its table from these, not from one
    :class:`Explanation` per recommendation (the objects cost more than the rule at a batch's size,
    and their construction holds the interpreter lock that the batch's threads share).
    ``explanations[r]`` is recommendation ``r``'s as an :class:`Explanation`."""

    interest: list
    topic: list
    layer: list
    seed_item_ids: list
    seed_titles: list
    interest_label: list
    topic_id: list
    agrees: list
    segment: str | None = None
    topic_level: int = -1

    def __len__(self) -> int:
        return len(self.interest)

    def __getitem__(self, r: int) -> Explanation:
        return Explanation(self.interest[r], self.topic[r], self.layer[r], tuple(self.seed_item_ids[r]),
                           tuple(self.seed_titles[r]), self.segment, self.interest_label[r], self.topic_level,
                           self.topic_id[r], self.agrees[r])

    def texts(self) -> list[str]:
        """Every explanation's :meth:`Explanation.describe`."""
        return [describe(topic, seeds, agrees, self.segment)
                for topic, seeds, agrees in zip(self.topic, self.seed_titles, self.agrees)]

    @classmethod
    def concatenate(cls, parts: list["Explanations"]) -> "Explanations":
        """The columns of ``parts`` (the same ``segment`` and ``topic_level``) one after another."""
        columns = [f.name for f in fields(cls) if f.name not in ("segment", "topic_level")]
        first = parts[0] if parts else cls(*([] for _ in columns))
        return cls(*([v for part in parts for v in getattr(part, name)] for name in columns),
                   segment=first.segment, topic_level=first.topic_level)


def explain_item(recommender, user: int, item: int, state, component: str, layer: str,
                 segment: str | None) -> Explanation:
    """The :class:`Explanation` of ``item`` for user row ``user`` of ``state`` (see the module
    docstring); ``component`` names the layer that contributed most."""
    return explain_user_items(recommender, user, np.array([item]), state, [component], [layer], segment)[0]


def explain_user_items(recommender, user: int, items: np.ndarray, state, components: list[str], layers: list[str],
                       segment: str | None) -> list[Explanation]:
    """:func:`explain_item` for several ``items`` of one user (``components`` and ``layers``
    aligned with them), item by item; the contributions of the user's members to every item are
    computed in one product per kind."""
    items = np.asarray(items, np.int64)
    block = _Block.of(recommender, state, np.array([user]), np.arange(items.size)[None, :], items, components)
    if block is None:
        return [item_topic_explanation(recommender, int(item), layer, segment) for item, layer in zip(items, layers)]
    terms = item_terms(recommender.profiler_)
    labels: dict[int, str] = {}  # interest -> what its members share: once per user, not per item
    return [_explanation(recommender, terms, int(item), block.owner, block.members, block.contributions[:, c],
                         block.strengths[:, c], layer, segment, labels)
            for c, (item, layer) in enumerate(zip(items, layers))]


@dataclass
class _Block:
    """The interest members of several users and their contributions (step 1 of the module
    docstring) to the users' recommendations, laid flat: ``members`` ``[m]`` catalog rows, user by
    user and interest by interest; ``owner`` ``[m]`` their interest within their user (0 = the
    first), ``interest`` ``[m]`` the interest's position in the block and ``user`` ``[m]`` the
    user's; ``recs`` ``[n_users, k]`` the recommendations of each user (-1 past its last);
    ``contributions`` ``[m, k]`` of each member to its user's recommendations, ``strengths``
    ``[n_interests, k]`` of each interest; ``interest_user`` ``[n_interests]``,
    ``interest_start`` and ``user_interest_start`` the starts of each interest's members and of
    each user's interests."""

    members: np.ndarray
    owner: np.ndarray
    interest: np.ndarray
    user: np.ndarray
    recs: np.ndarray
    contributions: np.ndarray
    strengths: np.ndarray
    interest_user: np.ndarray
    interest_start: np.ndarray
    user_interest_start: np.ndarray

    @classmethod
    def of(cls, recommender, state, users: np.ndarray, recs: np.ndarray, items: np.ndarray,
           components: list[str]) -> "_Block | None":
        """The block of distinct user rows ``users`` (each with an interest) whose recommendations are
        ``recs`` (positions into ``items`` and ``components``, -1 padding); None without interests."""
        interests = state.interests
        counts = interests.indptr[users + 1] - interests.indptr[users]
        if not counts.sum():
            return None
        ids = row_positions(interests.indptr, users)  # the users' interests, in order
        sizes = interests.size[ids]
        members = interests.members[row_positions(interests.member_indptr, ids)]
        interest = np.repeat(np.arange(ids.size), sizes)
        interest_user = np.repeat(np.arange(users.size), counts)
        user = interest_user[interest]
        interest_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        user_interest_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        owner = interest - user_interest_start[user]
        per_user = np.bincount(user, minlength=users.size)
        slot = np.arange(members.size) - np.concatenate([[0], np.cumsum(per_user)[:-1]])[user]
        padded = np.zeros((users.size, max(int(per_user.max()), 1)), np.int64)
        padded[user, slot] = members
        valid = recs >= 0
        rec_items = items[np.maximum(recs, 0)]  # [n_users, k]
        kinds = np.array([c in ("long_term", "short_term") for c in components] + [False])[recs]
        short = np.array([c == "short_term" for c in components] + [False])[recs]
        vectors = recommender.profiler_.item_vectors_
        # each recommendation against its user's members, [n_users * k, width] -> [m, k]
        n_users, k = rec_items.shape
        by_rec = np.repeat(padded, k, axis=0)
        cosines = inner_products_by_index(vectors[rec_items.ravel()], vectors, by_rec).reshape(
            n_users, k, -1)[user, :, slot]
        contributions = cosines.astype(np.float64)
        strengths = np.maximum.reduceat(contributions, interest_start, axis=0)
        model = recommender.collaborative_
        if model is not None and kinds.any():
            # left[padded] · right[rec]ᵀ with ``left`` as :class:`LowRankEASE` stores it: the scales on the small sides
            scaled = model.right[rec_items.ravel()] * model.shrink
            weights = inner_products_by_index(scaled, model.right, by_rec).reshape(n_users, k, -1)[user, :, slot] \
                * model.keep[members][:, None]
            weights = np.where(members[:, None] == rec_items[user], 0.0, weights)
            # the members' recency weights (``users`` are distinct, ``user`` indexes them)
            recency = gather(Rows.of(state.recency, users), user * state.recency.shape[1] + members).astype(np.float64)
            weights = weights * np.where(short[user], recency[:, None], 1.0)
            contributions = np.where(kinds[user], weights, contributions)
            summed = np.add.reduceat(np.maximum(weights, 0.0), interest_start, axis=0)
            strengths = np.where(kinds[interest_user], summed, strengths)
        dead = ~np.logical_or.reduceat(strengths > 0, user_interest_start, axis=0) & valid  # [n_users, k]
        if dead.any():  # nothing pulls towards the item: the closest members, every one counting
            lowest = np.minimum.reduceat(cosines, np.concatenate([[0], np.cumsum(per_user)[:-1]]), axis=0)
            shifted = cosines - lowest[user] + np.float32(1e-6)
            contributions = np.where(dead[user], shifted, contributions)
            strengths = np.where(dead[interest_user], np.maximum.reduceat(shifted, interest_start, axis=0), strengths)
        contributions[~valid[user]] = 0.0
        return cls(members, owner, interest, user, recs, contributions, strengths, interest_user, interest_start,
                   user_interest_start)

    def leading(self) -> np.ndarray:
        """:func:`_leading` of every recommendation at once: ``[m, k]``, True for a leading contributor."""
        n_members, k = self.contributions.shape
        columns = np.arange(k)
        top = np.maximum.reduceat(self.strengths, self.user_interest_start, axis=0)[self.interest_user]
        position = np.where(self.strengths == top, np.arange(self.strengths.shape[0])[:, None], self.strengths.shape[0])
        strongest = np.minimum.reduceat(position, self.user_interest_start, axis=0)  # [n_users, k]
        candidate = np.where(top > 0, self.strengths >= CANDIDATE_SHARE * top,
                             np.arange(self.strengths.shape[0])[:, None] == strongest[self.interest_user])
        # sorted along rows of the transpose (contiguous: 1.4x faster than along columns), the
        # interests' small integers by radix sort
        order = np.argsort(-self.contributions.T, axis=1, kind="stable")
        groups = self.interest.astype(np.uint16 if self.interest.size < 1 << 16 else np.int64)
        order = np.take_along_axis(order, np.argsort(groups[order], axis=1, kind="stable"), axis=1).T
        ranked = np.take_along_axis(self.contributions, order, axis=0)  # by interest, then by contribution
        group = self.interest[order]
        start = self.interest_start[group]
        keep = ((np.arange(n_members)[:, None] - start < LEADING) & (ranked > 0)
                & (ranked >= LEADING_SHARE * ranked[start, columns]) & candidate[group, columns])
        mask = np.zeros((n_members, k), bool)
        np.put_along_axis(mask, order, keep, axis=0)
        mask &= (self.recs >= 0)[self.user]
        users, empty = np.nonzero(~np.logical_or.reduceat(mask, self.first_members, axis=0) & (self.recs >= 0))
        mask[self.interest_start[strongest[users, empty]], empty] = True  # nothing positive: see _leading
        return mask

    @property
    def first_members(self) -> np.ndarray:
        return self.interest_start[self.user_interest_start]

    def pairs(self, mask: np.ndarray, offsets: np.ndarray | None = None) -> dict:
        """The (recommendation, member) pairs where ``mask`` ``[m, k]`` is True, each
        recommendation's by decreasing contribution (ties: the member's position), ranks starting
        at ``offsets[rec]`` (0)."""
        rows, columns = np.nonzero(mask)
        recs = self.recs[self.user[rows], columns]
        values = self.contributions[rows, columns]
        order = np.lexsort((rows, -values, recs))
        rows, recs, values = rows[order], recs[order], values[order]
        rank = np.arange(rows.size) - np.searchsorted(recs, recs)
        if offsets is not None:
            rank = rank + offsets[recs]
        return {"rec": recs, "member": self.members[rows], "owner": self.owner[rows], "contribution": values,
                "rank": rank}


def _explanation(recommender, terms: ItemTerms, item: int, owner, members, contribution, strength, layer: str,
                 segment: str | None, labels: dict) -> Explanation:
    """The rule of the module docstring for one item (``contribution`` ``[m]``, ``strength``
    ``[n_interests]``)."""
    profiler = recommender.profiler_
    tree, item_topics = profiler.topic_tree_, profiler.item_topics_
    fine = len(tree.levels) - 1
    topic, ground = int(item_topics[item, fine]), ""
    pool = _leading(owner, contribution, strength)
    shared = [terms.shared(item, int(members[m])) for m in pool]
    first = max(range(pool.size), key=lambda j: (shared[j].specificity, contribution[pool[j]], -j))
    if not shared[first] or shared[first].common:  # every positive contributor is a candidate too
        wider = np.setdiff1d(np.flatnonzero(contribution > 0), pool)
        wider = wider[np.argsort(-contribution[wider], kind="stable")]
        wide_pool = np.concatenate([pool, wider])
        wide_shared = shared + [terms.shared(item, int(members[m])) for m in wider]
        choice = max(range(wide_pool.size), key=lambda j: (
            bool(wide_shared[j]), not wide_shared[j].common, wide_shared[j].specificity, j < pool.size,
            contribution[wide_pool[j]], -j))
        if wide_shared[choice]:
            pool, shared, first = wide_pool, wide_shared, choice
    if shared[first]:
        words = shared[first].words
        ground = join_words(words)
        others = [j for j in range(pool.size) if j != first and set(words) & set(shared[j].words)]
    else:
        first, others = 0, list(range(1, pool.size))
        in_topic = [j for j in range(pool.size)
                    if item_topics[members[pool[j]], fine] == topic and not is_medoid_label(tree.fine.names[topic])]
        if in_topic:
            first, others = in_topic[0], in_topic[1:]
            ground = tree.fine.names[topic]
    best = int(owner[pool[first]])
    others = [j for j in others if owner[pool[j]] == best]  # the seeds come from one interest
    seeds = members[pool[[first, *others[:1]]]]
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
        topic_level=fine,
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


@dataclass
class _Pairs:
    """(recommendation, member) pairs of a batch, each field ``[n_pairs]``: ``rank`` the member's
    place among the recommendation's candidates (leading contributors first, each group by
    decreasing contribution), ``leading`` whether it is a leading contributor, ``shared`` what the
    item and the member share."""

    rec: np.ndarray
    member: np.ndarray
    owner: np.ndarray
    contribution: np.ndarray
    rank: np.ndarray
    leading: np.ndarray
    shared: SharedTerms

    @classmethod
    def of(cls, terms: ItemTerms, items: np.ndarray, parts: list[dict], leading: bool) -> "_Pairs":
        empty = {"rec": np.zeros(0, np.int64), "member": np.zeros(0, np.int64), "owner": np.zeros(0, np.int64),
                 "contribution": np.zeros(0), "rank": np.zeros(0, np.int64)}
        f = {k: np.concatenate([v, *[p[k] for p in parts]]) for k, v in empty.items()}
        return cls(f["rec"], f["member"], f["owner"], f["contribution"], f["rank"], np.full(f["rec"].size, leading),
                   terms.shared_many(items[f["rec"]], f["member"]))

    def __add__(self, other: "_Pairs") -> "_Pairs":
        a, b = self.shared, other.shared
        return _Pairs(*(np.concatenate([x, y]) for x, y in zip(
            (self.rec, self.member, self.owner, self.contribution, self.rank, self.leading),
            (other.rec, other.member, other.owner, other.contribution, other.rank, other.leading))),
            SharedTerms(*(np.concatenate([x, y]) for x, y in zip(
                (a.words, a.has_phrase, a.has_categories, a.information, a.phrase_information),
                (b.words, b.has_phrase, b.has_categories, b.information, b.phrase_information)))))


def explain_items(recommender, users: np.ndarray, items: np.ndarray, state, components: list[str],
                  layers: list[str], segment: str | None) -> Explanations:
    """:func:`explain_user_items` for the recommendations of many users at once: recommendation ``r``
    is item ``items[r]`` for user row ``users[r]`` (``components``, ``layers`` aligned). The
    contributions are computed for blocks of users (one batched product per kind, :class:`_Block`),
    the rule for every recommendation at once; the explanations are the same as item by item."""
    profiler = recommender.profiler_
    tree = profiler.topic_tree_
    fine_topics = profiler.item_topics_[:, -1]
    terms = item_terms(profiler)
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    n_recs = items.size
    blocks = [(block, block.leading()) for block in _blocks(recommender, state, users, items, components)]
    parts = [block.pairs(mask) for block, mask in blocks]
    pairs = _Pairs.of(terms, items, parts, leading=True)
    s = pairs.shared
    first = _first_per_rec(pairs.rec, n_recs, (pairs.rank, -pairs.contribution, -s.information, ~s.has_phrase,
                                                ~s.has_categories))
    weak = np.flatnonzero(first >= 0)
    weak = weak[~s.any[first[weak]] | s.common[first[weak]]]
    in_pool = pairs.leading
    if weak.size:  # a common or empty ground: every positive contributor is a candidate too
        is_weak = np.zeros(n_recs + 1, bool)  # the last: padding
        is_weak[weak] = True
        offsets = np.bincount(pairs.rec, minlength=n_recs)
        wide_parts = [block.pairs((block.contributions > 0) & ~mask & is_weak[block.recs][block.user], offsets)
                      for block, mask in blocks]
        pairs = pairs + _Pairs.of(terms, items, wide_parts, leading=False)
        s = pairs.shared
        candidate = np.flatnonzero(is_weak[pairs.rec])
        choice = _first_per_rec(pairs.rec[candidate], n_recs, (  # a ground that is not common, then as above
            pairs.rank[candidate], -pairs.contribution[candidate], ~pairs.leading[candidate],
            -s.information[candidate], ~s.has_phrase[candidate], ~s.has_categories[candidate],
            s.common[candidate], ~s.any[candidate]))
        widened = np.flatnonzero(choice >= 0)
        widened = widened[s.any[candidate[choice[widened]]]]
        first[widened] = candidate[choice[widened]]
        is_widened = np.zeros(n_recs, bool)
        is_widened[widened] = True
        in_pool = pairs.leading | is_widened[pairs.rec]
    has = first >= 0
    ground = has & s.any[np.maximum(first, 0)]
    second = np.full(n_recs, -1, np.int64)
    mine = in_pool & ground[pairs.rec] & (np.arange(pairs.rec.size) != first[pairs.rec])
    mine &= pairs.owner == pairs.owner[first[pairs.rec]]
    named = terms.word_ids(s.words[first[pairs.rec]], padding=-1)
    mine &= (terms.word_ids(s.words, padding=-2)[:, :, None] == named[:, None, :]).any(axis=(1, 2))
    _set_first(second, pairs, mine)
    topical = np.zeros(n_recs, bool)
    fallback = has & ~ground  # nothing shared: a leading contributor in the item's fine topic, else the strongest
    if fallback.any():
        labelled = ~np.array([is_medoid_label(name) for name in tree.fine.names])
        in_topic = (pairs.leading & fallback[pairs.rec] & (fine_topics[pairs.member] == fine_topics[items[pairs.rec]])
                    & labelled[fine_topics[items[pairs.rec]]])
        start = _first_per_rec(pairs.rec[in_topic], n_recs, (pairs.rank[in_topic],))
        topical = start >= 0
        start = np.where(topical, np.flatnonzero(in_topic)[np.maximum(start, 0)] if in_topic.any() else -1, -1)
        strongest = _first_per_rec(pairs.rec[pairs.leading], n_recs, (pairs.rank[pairs.leading],))
        strongest = np.where(strongest >= 0, np.flatnonzero(pairs.leading)[np.maximum(strongest, 0)], -1)
        first[fallback] = np.where(topical, start, strongest)[fallback]
        pool = np.where(topical[pairs.rec], in_topic, pairs.leading) & fallback[pairs.rec]
        pool &= (np.arange(pairs.rec.size) != first[pairs.rec]) & (pairs.owner == pairs.owner[first[pairs.rec]])
        _set_first(second, pairs, pool)
    return _assemble(recommender, terms, state, users, items, layers, segment, pairs, first, second, ground,
                     topical, fine_topics[items])


MEMBER_BUDGET = 1 << 15  # padded member rows per block: bounds its [rows, k] products (a few MB at k = 10)


def _blocks(recommender, state, users: np.ndarray, items: np.ndarray, components: list[str]):
    """The :class:`_Block` of the users (with interests) of recommendations ``users``/``items``,
    a few users at a time so that the padded member vectors stay within :data:`MEMBER_BUDGET` rows."""
    interests = state.interests
    order = np.argsort(users, kind="stable")
    rows, starts, counts = np.unique(users[order], return_index=True, return_counts=True)
    recs = np.full((rows.size, int(counts.max(initial=1))), -1, np.int64)
    recs[np.repeat(np.arange(rows.size), counts), np.arange(order.size) - np.repeat(starts, counts)] = order
    sizes = interests.member_indptr[interests.indptr[rows + 1]] - interests.member_indptr[interests.indptr[rows]]
    keep = sizes > 0
    rows, recs, sizes = rows[keep], recs[keep], sizes[keep]
    start, widest = 0, 0
    for end, size in enumerate(sizes.tolist()):
        widest = max(widest, size)
        if end > start and (end + 1 - start) * widest > MEMBER_BUDGET:
            yield _Block.of(recommender, state, rows[start:end], recs[start:end], items, components)
            start, widest = end, size
    if start < rows.size:
        yield _Block.of(recommender, state, rows[start:], recs[start:], items, components)


def _first_per_rec(recs: np.ndarray, n_recs: int, keys: tuple) -> np.ndarray:
    """Per recommendation, the position (into ``recs``) of the entry that sorts first by ``keys``
    (the last most significant, as in ``np.lexsort``); -1 where it has none."""
    order = np.lexsort((*keys, recs))
    sorted_recs = recs[order]
    head = np.r_[True, sorted_recs[1:] != sorted_recs[:-1]] if sorted_recs.size else np.zeros(0, bool)
    first = np.full(n_recs, -1, np.int64)
    first[sorted_recs[head]] = order[head]
    return first


def _set_first(target: np.ndarray, pairs: _Pairs, where: np.ndarray) -> None:
    """``target[rec]`` = the lowest-ranked pair of ``rec`` among ``where``, for the recs that have one."""
    chosen = _first_per_rec(pairs.rec[where], target.size, (pairs.rank[where],))
    found = chosen >= 0
    target[found] = np.flatnonzero(where)[chosen[found]]


def _assemble(recommender, terms: ItemTerms, state, users, items, layers, segment, pairs: _Pairs, first, second,
              ground, topical, topics) -> Explanations:
    """The :class:`Explanations` of :func:`explain_items`."""
    profiler = recommender.profiler_
    names = profiler.topic_tree_.fine.names
    seeds = np.where(second >= 0, pairs.member[np.maximum(second, 0)], -1)
    firsts = pairs.member[np.maximum(first, 0)]
    ids, titles = recommender.item_ids_, recommender.titles_
    first_ids, first_titles = ids[firsts].tolist(), titles[firsts].tolist()
    second_ids, second_titles = ids[np.maximum(seeds, 0)].tolist(), titles[np.maximum(seeds, 0)].tolist()
    interests = np.where(first >= 0, pairs.owner[np.maximum(first, 0)], -1).tolist()
    words = pairs.shared.words[np.maximum(first, 0)].tolist()
    explained, two = (first >= 0).tolist(), (seeds >= 0).tolist()
    users, topics, ground, topical = users.tolist(), topics.tolist(), ground.tolist(), topical.tolist()
    named = sorted({(user, interest) for user, interest, has in zip(users, interests, explained) if has})
    indptr, members, member_indptr = state.interests.indptr, state.interests.members, state.interests.member_indptr
    interest_rows = [indptr[u] + i for u, i in named]
    groups = [members[member_indptr[g]:member_indptr[g + 1]] for g in interest_rows]
    labels = dict(zip(named, interest_names(groups, profiler, terms)))
    grounds: dict[tuple, str] = {}

    def text(r: int) -> str:
        if not explained[r]:
            return names[topics[r]]
        if not ground[r]:
            return names[topics[r]] if topical[r] else ""
        key = tuple(words[r])
        if key not in grounds:
            grounds[key] = join_words(terms.term_names(key))
        return grounds[key]

    topic = [text(r) for r in range(len(users))]
    return Explanations(
        interest=interests, topic=topic, layer=list(layers),
        seed_item_ids=[[] if not has else [a, b] if both else [a]
                       for has, both, a, b in zip(explained, two, first_ids, second_ids)],
        seed_titles=[[] if not has else [a, b] if both else [a]
                     for has, both, a, b in zip(explained, two, first_titles, second_titles)],
        interest_label=[labels[u, i] if has else "" for u, i, has in zip(users, interests, explained)],
        topic_id=topics, agrees=[bool(t) or not has for t, has in zip(topic, explained)],
        segment=segment, topic_level=len(profiler.topic_tree_.levels) - 1)


def interest_name(members: np.ndarray, profiler, terms: ItemTerms | None = None) -> str:
    """What an interest's members (catalog rows, most central first) share: the categories more
    than half of them carry (deepest, most widely held first, at most two), else the label of the
    topic more than half of them fall in, else ``like “<title>” (<year>)`` of its most central
    member."""
    return interest_names([members], profiler, terms)[0]


def interest_names(groups: list[np.ndarray], profiler, terms: ItemTerms | None = None) -> list[str]:
    """:func:`interest_name` of several interests (each an array of catalog rows), the categories
    of all of them counted at once."""
    terms = terms if terms is not None else item_terms(profiler)
    groups = [np.asarray(g, np.int64) for g in groups]
    sizes = np.array([g.size for g in groups], np.int64)
    rows = Rows.of(terms.items, np.concatenate([np.zeros(0, np.int64), *groups]))
    entry_group = np.repeat(np.repeat(np.arange(sizes.size), sizes), np.diff(rows.indptr))
    keys, held = np.unique(entry_group * terms.n_nodes + rows.indices, return_counts=True)
    group, node = keys // max(terms.n_nodes, 1), keys % max(terms.n_nodes, 1)
    common = held > MAJORITY * sizes[group]
    group, node, held = group[common], node[common], held[common]
    parents = terms.parents[node]
    is_parent = np.isin(group * terms.n_nodes + node, (group * terms.n_nodes + parents)[parents >= 0])
    group, node, held = group[~is_parent], node[~is_parent], held[~is_parent]
    order = np.lexsort((node, -held, group))
    named: dict[int, list[str]] = {}
    for g, n in zip(group[order].tolist(), node[order].tolist()):
        if len(named.setdefault(g, [])) < 2:
            named[g].append(str(terms.names[n]))
    return [join_words(named[g]) if g in named else _topic_or_medoid(members, profiler)
            for g, members in enumerate(groups)]


def _topic_or_medoid(members: np.ndarray, profiler) -> str:
    tree = profiler.topic_tree_
    level, topic, _ = shared_topic(members, profiler.item_topics_)
    if level >= 0 and not is_medoid_label(tree.levels[level].names[topic]):
        return tree.levels[level].names[topic]
    return f"like {quoted_title(profiler.item_titles_[members[0]])}"


def item_topic_explanation(recommender, item: int, layer: str, segment: str | None) -> Explanation:
    """An explanation naming only the item's own fine topic (a user without interests, or a text
    cold start)."""
    tree = recommender.profiler_.topic_tree_
    fine = len(tree.levels) - 1
    topic = int(recommender.profiler_.item_topics_[item, fine])
    return Explanation(-1, tree.fine.names[topic], layer, segment=segment, topic_level=fine, topic_id=topic)
