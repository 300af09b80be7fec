library(testthat)
library(batchstore)

test_check("batchstore")
