"""Text from files and errors, shown as it is: never read as Markdown by Streamlit."""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation; Streamlit's own syntax (emoji
# shortcodes ":x:", icons ":material/...:", colours ":red[...]") survives that, so a
# zero-width space after each colon that starts a word breaks those apart too.
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&^=\"'])")
_SHORTCODE = re.compile(r":(?=\w)")


def plain(text: str) -> str:
    """`text` escaped so that st.error / st.markdown show its characters literally."""
    return _SHORTCODE.sub(":\u200b", _PUNCTUATION.sub(r"\\\1", text))
