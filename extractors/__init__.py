"""Extractors: pixels -> typed features. They know nothing about UNets."""
