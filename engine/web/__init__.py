"""HTTP helpers shared by the domains' ``http.py`` modules (body parsing).

They sit below the domains so a domain's routes never import ``engine.api``,
which imports the domains to assemble the app (imports point down). Kept out
of ``engine.core`` so the bottom layer does not depend on aiohttp.
"""
