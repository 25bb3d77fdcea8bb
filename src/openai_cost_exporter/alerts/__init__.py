"""The alert path of a cycle: figures -> rules -> messages handed to notify."""
