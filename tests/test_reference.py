"""The CPU reference of the mask contract: Philox itself, the word order, the threshold."""

import torch

from dropbench.kernels import reference
from dropbench.kernels.contract import keep_threshold


def test_philox_matches_random123_known_answer():
    # Random123's kat_vectors: philox4x32_10, key (0, 0), counter (0, 0, 0, 0).
    words = [int(w) for w in reference.philox4x32(0, torch.tensor([0]))]
    assert words == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_counter_high_word_and_seed_high_word_matter():
    low = reference.philox4x32(0, torch.tensor([1]))
    high = reference.philox4x32(0, torch.tensor([1 + 2**32]))
    assert [int(w) for w in low] != [int(w) for w in high], "counter bits above 32 are ignored"
    seed_low = reference.philox4x32(5, torch.tensor([1]))
    seed_high = reference.philox4x32(5 + 2**40, torch.tensor([1]))
    assert [int(w) for w in seed_low] != [int(w) for w in seed_high], "seed bits above 32 are ignored"


def _halves(seed, counter):
    """The eight 16-bit halves of one Philox call, in the contract's order (word 0 low, word 0 high, ...)."""
    words = [int(w) for w in reference.philox4x32(seed, torch.tensor([counter]))]
    return [half for word in words for half in (word & 0xFFFF, word >> 16)]


def test_random_words_take_the_halves_of_counter_s_div_8_in_order():
    words = reference.random_words(seed=7, numel=24).tolist()
    for counter in range(3):
        halves = _halves(7, counter)
        # R(s) = H(s) * 2**16 + H(s xor 1): each element's own half on top, its word partner's below.
        assert words[8 * counter: 8 * counter + 8] == [halves[j] * 65536 + halves[j ^ 1] for j in range(8)]


def test_stream_words_known_answer():
    # Random123's philox4x32_10 vector for key 0, counter 0 (above), each word twice: halves swapped
    # for the even index, as drawn for the odd one.
    assert reference.random_words(seed=0, numel=8).tolist() == [
        0xE8D56627, 0x6627E8D5, 0xC58DE169, 0xE169C58D, 0xAC4CBC57, 0xBC57AC4C, 0xDBD89B00, 0x9B00DBD8]


def test_each_word_is_a_philox_word_with_its_halves_swapped_for_even_indices():
    words = reference.random_words(seed=7, numel=16).tolist()
    philox = [int(w) for counter in (0, 1) for w in reference.philox4x32(7, torch.tensor([counter]))]
    for s, word in enumerate(words):
        own = philox[s // 2]
        assert word == (own if s % 2 else ((own << 16) | (own >> 16)) & 0xFFFFFFFF), s


def test_offset_continues_the_stream_mid_counter():
    whole = reference.random_words(seed=3, numel=40)
    assert torch.equal(reference.random_words(seed=3, numel=17, offset=13), whole[13:30])


def test_seed_at_or_above_2_pow_63_is_its_64_bit_pattern():
    as_int = reference.random_words(seed=2**64 - 1, numel=8)
    as_tensor = reference.random_words(seed=torch.tensor(-1), numel=8)
    assert torch.equal(as_int, as_tensor)


def test_threshold_is_round_p_times_2_pow_32():
    assert keep_threshold(0.5) == 2**31
    assert keep_threshold(0.0) == 0
    assert keep_threshold(1.0) == 2**32
    assert keep_threshold(0.1) == round(0.1 * 2**32)


def test_per_row_keep_mask_counts_within_each_row():
    seeds = torch.tensor([3, 9, 3])
    mask = reference.keep_mask((3, 10), 0.5, seeds)
    assert torch.equal(mask[0], reference.keep_mask((10,), 0.5, 3))
    assert torch.equal(mask[1], reference.keep_mask((10,), 0.5, 9))
    assert torch.equal(mask[0], mask[2]), "rows with the same seed must share a mask"


def test_variational_mask_is_element_mask_of_reduced_shape():
    mask = reference.variational_keep_mask((4, 6, 5), 0.3, seed=11, dim=1)
    assert mask.shape == (4, 1, 5)
    assert torch.equal(mask, reference.keep_mask((4, 1, 5), 0.3, 11))
