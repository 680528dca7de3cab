"""Outbound campaigns on the real switch (docs/campaigns.md).

Pure decisions: ``model`` (settings), ``windows`` (calling windows), ``outcomes`` (switch
results -> outcome), ``retry`` (outcome -> next attempt), ``abandon`` (the legal rate).
Storage: ``contacts/`` (import, COPY), ``dnc``, ``hopper`` (which contacts next), ``store``
(campaigns and attempts). The live side: ``runner`` (one per running campaign, under a Redis
lease with a fencing token), ``service`` (the facade the API and the app use), ``http``.
"""
