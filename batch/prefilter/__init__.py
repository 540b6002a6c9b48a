"""The prefilter: ``features`` of a text, the ``model`` that scores them (saved without pickle),
and ``train``, which fits it and picks the threshold that keeps a recall target."""
