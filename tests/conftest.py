"""Test-suite settings shared by every test directory."""

from hypothesis import settings

# Property tests draw the same examples on every run, so a red CI is reproducible; run
# with --hypothesis-profile=explore to search afresh.
settings.register_profile("default", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=500, print_blob=True)
settings.load_profile("default")
