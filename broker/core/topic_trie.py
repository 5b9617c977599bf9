"""AMQP topic matching with a trie over the dot-separated words of binding keys.

Rules (as RabbitMQ): a key is split on ``"."``; the empty key has zero words and
``"a..b"`` has an empty middle word. In a binding pattern ``"*"`` matches exactly
one word and ``"#"`` zero or more words. Lookups are cached per routing key; the
cache is dropped on every change of the trie and bounded in size.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

CACHE_ENTRIES_MAX = 4096


def split_words(key: str) -> list[str]:
    return key.split(".") if key else []


class _Node(Generic[T]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: dict[T, None] = {}


class TopicTrie(Generic[T]):
    __slots__ = ("_root", "_cache", "_size")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._cache: dict[str, tuple[T, ...]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, value: T) -> None:
        node = self._root
        for word in split_words(pattern):
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _Node()
            node = child
        if value not in node.values:
            node.values[value] = None
            self._size += 1
        self._cache.clear()

    def remove(self, pattern: str, value: T) -> bool:
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for word in split_words(pattern):
            child = node.children.get(word)
            if child is None:
                return False
            path.append((node, word))
            node = child
        if value not in node.values:
            return False
        del node.values[value]
        self._size -= 1
        # prune empty nodes bottom-up
        while path and not node.values and not node.children:
            parent, word = path.pop()
            del parent.children[word]
            node = parent
        self._cache.clear()
        return True

    def match(self, key: str) -> tuple[T, ...]:
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        words = split_words(key)
        out: dict[T, None] = {}
        seen: set[tuple[int, int]] = set()
        n = len(words)

        def walk(node: _Node[T], i: int) -> None:
            mark = (id(node), i)
            if mark in seen:
                return
            seen.add(mark)
            if i == n:
                out.update(node.values)
            else:
                children = node.children
                child = children.get(words[i])
                if child is not None:
                    walk(child, i + 1)
                if words[i] != "*":
                    star = children.get("*")
                    if star is not None:
                        walk(star, i + 1)
            hash_node = node.children.get("#")
            if hash_node is not None:
                for j in range(i, n + 1):
                    walk(hash_node, j)

        walk(self._root, 0)
        result = tuple(out)
        if len(self._cache) >= CACHE_ENTRIES_MAX:
            self._cache.clear()
        self._cache[key] = result
        return result
