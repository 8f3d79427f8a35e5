"""User interests: time and category layers, the topic tree, per-user interests, user segments and the clustering backends."""
