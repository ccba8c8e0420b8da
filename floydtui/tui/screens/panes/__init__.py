"""The wizard's steps, one pane each, in the order the guide walks through them."""
