"""Tests of the distillation methods and the trainer (a package, so tests share ``helpers``)."""
