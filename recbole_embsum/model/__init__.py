"""EmbSum model: poly-attention (Eq. 2), scorer (Eqs. 3-4), text handling, backbone, and the RecBole model."""
