"""Face recognition models behind one interface (base.Recognizer) and their registry.

    from idface.identity.registry import get_recognizer, recognizer_status
    rec = get_recognizer("dlib-resnet")          # or "arcface" where its weights are present
    emb, info = rec.embed_photo("photo.jpg")     # [D] numpy + FaceInfo (faces found, message)
    rec.is_same(rec.score(emb_a, emb_b))         # the model's own same-person rule
"""
