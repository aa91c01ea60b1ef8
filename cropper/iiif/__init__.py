"""IIIF: the Image API 3.0 (image.py) over FathomNet images."""
