"""Translating the newsletter into the languages its readers have.

- ``languages``: BCP 47 tags, which are written right to left, and their names for people.
- ``engines``: the one small interface every machine-translation engine has (DeepL, LibreTranslate).
- ``protect``: what must come back unchanged (links, tokens, phone numbers, names the school keeps),
  and the check that it did.
- ``cache``: each piece of text is sent to an engine once per language, engine and keep-list.
- ``translator``: a ``Newsletter`` in, the same newsletter in another language out, block by block.
- ``own``: the school's own ``newsletter.<lang>.md`` translations, checked against the English.

Only the newsletter's own text goes to an engine; a reader's name and address never do, because the
per-reader tokens are filled in at send time, after translation.
"""
