"""Plugins that ship with actplug; they use the same hook as any third-party plugin."""
