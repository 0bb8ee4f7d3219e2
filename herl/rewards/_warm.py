"""Imported by the reward fork server so every worker forked from it starts with the checkers loaded."""

from herl.rewards import checkers

checkers.warm_up()
