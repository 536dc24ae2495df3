"""Keys built from the pieces that have escaped storage roots elsewhere (a hypothesis strategy)."""

from hypothesis import strategies as st

PIECES = ["..", ".", "/", "\\", "%2e", "%2E", "%2e%2e", "%252e%252e", "%2f", "%5c", "%00",
          "\uff0e", "\uff0e\uff0e", "\uff0f", "\u2024", "\u2025", "\u2215", "\u2044", "\ufe52",
          "\uff3c", "\x00", "\n", "\x7f", "\u202e", "\u200b", "\ufeff", "~", "C:", "//",
          "../../", "/etc/passwd", ".stashflow", ".stashflow-tmp-1", "a", "b", "k", "x" * 255,
          "y" * 300, "\u00e9" * 130, "."]
KEYS = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)),
                min_size=1, max_size=8).map("".join)
