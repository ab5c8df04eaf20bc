"""Which base? Rank candidate bases on a sample before extracting everything.

``sample``: a stratified, grouped, seeded sample of the source, extracted by every candidate
into the store (the winner's full extraction reuses those rows); ``candidates``: what each
candidate is and how it is built; ``logme``: transferability estimates without training
(LogME, H-score); ``probe``: a quick closed-form ridge probe beside the baselines;
``verdict``: the ranking, which differences are real, the cost, the report folder;
``ranking``: :func:`~bottleneck_transfer.rank.ranking.rank_bases`, all of it in order.
"""
