"""Names the generated files bind themselves, which nothing from a spec may take."""

GLOBAL_NAMES = frozenset(
    ["torch", "nn", "F", "math", "tf", "keras", "layers", "ops", "np", "chainer", "L"]
    + ["make_divisible", "make_stage", "pad_same", "pad_causal", "same_pad", "channel_shuffle", "instance_norm"]
    + ["glorot_uniform", "pair", "tf_padding", "avg_pool_padded", "Stage"]
    + ["super", "int", "float", "bool", "str", "round", "min", "max", "abs", "range", "dict", "list", "tuple"]
    + ["len", "sum", "isinstance", "hasattr", "getattr", "enumerate", "reversed", "type", "zip"]
)
