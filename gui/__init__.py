"""The desktop app: the window (`main_window`), its start-up (`app`), and one folder per
feature. The only package that imports Qt; the `inferdeck` launcher reaches it by name.
"""
