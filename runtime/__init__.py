from tastemap.runtime.clustering import resolve_backend
from tastemap.runtime.data import (
    CatalogColumns,
    DataReport,
    EventColumns,
    align_events,
    load_movielens,
    read_catalog,
    read_events,
    render_item_texts,
)
from tastemap.runtime.layers import TimeWindows, UserItems
from tastemap.runtime.profile_io import read_profiles, write_profiles
from tastemap.runtime.profiles import InterestProfiler, UserInterests, UserProfiles
from tastemap.runtime.segments import UserSegmenter, write_segments
from tastemap.runtime.topics import TopicTree, fit_topic_tree
