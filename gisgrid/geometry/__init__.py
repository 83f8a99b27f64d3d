"""Pure geometry engines: shapely and numpy in, shapely and numpy (or plain frames) out.

Nothing here knows a town, a finding or a person: ``coverage`` finds gaps, overlaps and
uncovered line parts, ``tolerance`` tells digitising noise from real defects by width, and
``linework`` measures intervals along lines (linear referencing).
"""
