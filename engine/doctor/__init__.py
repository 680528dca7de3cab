"""``python -m engine doctor``: checks a deployment and says what is wrong and how to fix it
(docs/production.md "Doctor")."""
