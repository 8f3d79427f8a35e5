"""End-to-end jobs that chain the stages (the MovieLens demo and the inputs it assembles)."""
