"""linear_softmax, softmax(X @ W + b): fastsoftmax against its peers on one minibatch and on the 60000 training rows."""

from bench.runner import kernel_benchmarks

test_cpu, test_gpu = kernel_benchmarks("linear_softmax")
