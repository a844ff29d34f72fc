"""Stage-2 rules as objects: one module per rule, :func:`.registry.parse_rule` for specs.

A rule says how each Stage-1 bucket's target is split over its children (by tokens, or an
equal share) and which documents of a child form its pool (all of them, the top share by a
score, or QuaDMix's expected repeats). Pure Python: no Spark, no other sampling module.
"""
