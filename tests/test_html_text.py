"""HTML as the reader sees it: text in a colour all but that of its background."""

from __future__ import annotations

from pyspamd.htmltext import html_to_text


def test_low_contrast_text_needs_a_ground_like_its_colour() -> None:
    words = "river table cloud garden window silver morning yellow " * 2
    assert html_to_text(f'<font color="#fefefe">{words}</font>').low_contrast_chars > 40
    assert html_to_text(f'<p style="color:#eee">{words}</p>').low_contrast_chars > 40
    # white on a dark cell, on a picture, on a ground a style sheet sets: not judged low
    assert html_to_text(f'<table bgcolor="#232850"><tr><td><font color="#ffffff">{words}'
                        '</font></td></tr></table>').low_contrast_chars == 0
    assert html_to_text(f'<td background="bg.gif"><font color="#fff">{words}</font></td>'
                        ).low_contrast_chars == 0
    assert html_to_text(f'<style>.h {{background:#000}}</style><div class="h">'
                        f'<span style="color:white">{words}</span></div>').low_contrast_chars == 0
    # a transparent background lets the parent's show through
    assert html_to_text(f'<div style="background-color:#000"><span style="background-color:'
                        f'rgba(0,0,0,0);color:#fff">{words}</span></div>').low_contrast_chars == 0


def test_text_inside_a_counted_element_is_counted_once_and_only_inside_that_element() -> None:
    # the <i> inside the counted <span> is not counted again
    counted = ('<table><tr><td bgcolor="#ffffff"><span style="color:#fff">'
               '<i style="color:#fff;background:#fff">abcdef</i></span></td></tr></table>')
    assert html_to_text(counted).low_contrast_chars == 6
    # the same span on a dark cell is readable, so its <i> (white on its own white ground)
    # counts, although that span's markup is the markup of the counted one above
    readable = counted.replace('bgcolor="#ffffff"', 'bgcolor="#000000"')
    assert html_to_text(readable).low_contrast_chars == 6
    assert html_to_text(counted + readable).low_contrast_chars == 12
    hidden = '<div style="display:none">abc<span style="display:none">defg</span></div>'
    assert html_to_text(hidden * 2).hidden_chars == 14
