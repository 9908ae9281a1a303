"""The Slicer modules' work on a scene, without Qt: the logic that copies nodes into requests, runs the
engine on them and turns its results into nodes, and the texts the panel shows. `io/mrml` is the one
thing it uses that touches Slicer; CollaGANImpute.py's logic class is built from these classes."""
