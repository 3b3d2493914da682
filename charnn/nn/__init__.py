"""The reference math, numpy only: every layer as a forward/backward pair with a named cache.

This is the specification of charnn. The compiled backend (charnn.backend.numba) implements the same
functions with the same signatures and caches, and tests check every pair agrees.

    activations   tanh, sigmoid, relu, ... each with its derivative written from its output
    layers        embedding, linear, dense, dropout, softmax cross-entropy
    rnn, lstm, gru  the recurrent cells: one step, and a sequence (truncated BPTT)
    optim         Adam's elementwise update
    gradcheck     centred finite differences and relative errors
"""
