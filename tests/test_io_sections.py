"""Markdown sections rewritten in place (benchmark output keeps other sections)."""

from fedjax_rec import checkpoints


def test_replace_section_keeps_the_rest(tmp_path):
  path = tmp_path / "B.md"
  checkpoints.replace_section(path, "a", "first A")
  checkpoints.replace_section(path, "b", "B")
  text = path.read_text()
  checkpoints.replace_section(path, "a", "second A")
  new = path.read_text()
  assert "first A" not in new and "second A" in new and "B" in new
  assert new.index("second A") < new.index("<!-- begin b -->")
  assert new == text.replace("first A", "second A")
