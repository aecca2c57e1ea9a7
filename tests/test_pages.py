"""trainlab.pages: the one page skeleton and its few helpers."""

from __future__ import annotations

import re

from trainlab import pages


def test_a_page_is_one_self_contained_document_with_its_title_escaped():
    html = pages.page("a <b> & c", "<p>body</p>\n")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<title>a &lt;b&gt; &amp; c</title>" in html
    assert "<h1>a &lt;b&gt; &amp; c</h1>" in html
    assert "<p>body</p>" in html
    assert pages.CSS in html and "<script" not in html
    assert "http://" not in html and "https://" not in html and not re.search(r"<link\b", html)


def test_escape_quotes_every_special_character():
    assert pages.escape('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert pages.escape(3) == "3"


def test_number_shows_four_significant_digits_and_escapes_text():
    assert pages.number(0.123456) == "0.1235"
    assert pages.number(12345678.0) == "1.235e+07"
    assert pages.number(7) == "7" and pages.number(True) == "True"
    assert pages.number("0.123456") == "0.1235" and pages.number("42") == "42"
    assert pages.number(None) == "—" and pages.number("") == "—"
    assert pages.number(float("nan")) == "nan" and pages.number(float("inf")) == "inf"
    assert pages.number("<b>") == "&lt;b&gt;"


def test_missing_is_an_escaped_note():
    assert pages.missing("no <file>") == '<p class="missing">no &lt;file&gt;</p>\n'


def test_img_shows_nothing_without_a_figure_and_escapes_its_alt():
    assert pages.img(None, "curves") == ""
    assert pages.img("data:image/png;base64,AA", 'a "b"') == (
        '<img src="data:image/png;base64,AA" alt="a &quot;b&quot;">\n'
    )


def test_table_marks_the_best_row_and_aligns_the_first_column_left():
    html = pages.table(["run", "loss"], [["a", "0.5"], ["b", "0.2"], ["c", "0.9"]], best=1)
    rows = re.findall(r"<tr[^>]*>.*?</tr>", html)
    assert len(rows) == 4  # the header and three rows
    assert rows[0] == '<tr><th class="text">run</th><th>loss</th></tr>'
    assert rows[2] == '<tr class="best"><td class="text">b</td><td>0.2</td></tr>'
    assert html.count('class="best"') == 1
    assert 'class="best"' not in pages.table(["run"], [["a"]])


def test_details_is_collapsed_with_an_escaped_summary_and_its_body_as_is():
    html = pages.details("config <yaml>", "<pre>x: 1</pre>\n")
    assert html.startswith("<details><summary>config &lt;yaml&gt;</summary>")
    assert "<pre>x: 1</pre>" in html and html.rstrip().endswith("</details>")
    assert "<details open" not in html


def test_write_page_makes_its_folder_and_writes_the_page(tmp_path):
    path = pages.write_page(tmp_path / "a" / "report.html", "t", "<p>é</p>")
    assert path == tmp_path / "a" / "report.html"
    assert path.read_text(encoding="utf-8") == pages.page("t", "<p>é</p>")
