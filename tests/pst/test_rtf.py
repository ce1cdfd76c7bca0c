"""RTF to text, without libpff."""

from fund_mail.pst.rtf import rtf_to_text


def test_text_and_paragraphs():
    rtf = r"{\rtf1\ansi{\fonttbl{\f0 Arial;}}{\colortbl;\red0\green0\blue0;}\f0 Hello\par World}"
    assert rtf_to_text(rtf) == "Hello\nWorld"


def test_codepage_escapes_and_unicode():
    rtf = r"{\rtf1\ansi\ansicpg949 \'c7\'d1\'b1\'db \u54620?\u44544? caf\'e9}"
    text = rtf_to_text(rtf)
    assert text.startswith("한글 한글")


def test_ignorable_destinations_and_escaped_symbols():
    rtf = r"{\rtf1{\*\generator Riched20;}{\pict\pngblip 89504e47}a\{b\}c\\d\tab e}"
    assert rtf_to_text(rtf) == "a{b}c\\d\te"


def test_html_encapsulated_in_rtf_keeps_the_text():
    rtf = (
        r"{\rtf1\ansi\fromhtml1 {\*\htmltag19 <html>}{\*\htmltag34 <body>}Fund update"
        r"{\*\htmltag244 <br>}\par NAV 1,234{\*\htmltag0 </body>}}"
    )
    assert rtf_to_text(rtf) == "Fund update\nNAV 1,234"
