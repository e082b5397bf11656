"""Framework adapters, installed as ``actplug.integrations``: one module per framework.

Nothing here is imported by ``import actplug``; core never imports a framework.
"""
