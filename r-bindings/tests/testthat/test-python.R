# Cross-language: what R writes Python reads with equal values, and the other way round; and
# both name partitions identically.

test_that("a frame written by R is read by Python with equal values", {
  skip_without_python()
  server <- start_metastore()
  df <- data.frame(
    num = c(1.5, NA, -2),
    int = c(1L, NA, 3L),
    lgl = c(TRUE, FALSE, NA),
    chr = c("a", NA, "\u00e9t\u00e9"),
    fct = factor(c("x", "y", NA), levels = c("y", "x", "unused")),
    day = as.Date(c("2016-10-31", NA, "2020-02-29")),
    at = as.POSIXct(c("2024-01-02 03:04:05.5", NA, "1999-12-31 23:59:59"), tz = "Europe/Paris")
  )
  sf_writer(df, "xl", "from_r", partitions = c(ds = 20161031))
  out <- run_python(server, '
import datetime as dt, math
import pandas as pd
import batchstore as bs

df = bs.load_dataframe("xl", "from_r", {"ds": 20161031})
assert list(df.columns) == ["num", "int", "lgl", "chr", "fct", "day", "at"], list(df.columns)
assert df["num"].iloc[0] == 1.5 and math.isnan(df["num"].iloc[1]) and df["num"].iloc[2] == -2
assert df["int"].iloc[0] == 1 and pd.isna(df["int"].iloc[1]) and df["int"].iloc[2] == 3
assert df["lgl"].tolist()[:2] == [True, False] and pd.isna(df["lgl"].iloc[2])
chars = df["chr"].tolist()
assert chars[0] == "a" and pd.isna(chars[1]) and chars[2] == "\\u00e9t\\u00e9", chars
assert list(df["fct"].cat.categories) == ["y", "x", "unused"], df["fct"].cat.categories
assert df["fct"].iloc[0] == "x" and df["fct"].iloc[1] == "y" and pd.isna(df["fct"].iloc[2])
assert df["day"].iloc[0] == dt.date(2016, 10, 31) and pd.isna(df["day"].iloc[1])
paris = pd.Timestamp("2024-01-02 03:04:05.5", tz="Europe/Paris")
assert df["at"].iloc[0] == paris, df["at"].iloc[0]
assert str(df["at"].dt.tz) == "Europe/Paris"
assert pd.isna(df["at"].iloc[1])
print("ok", len(df))
')
  expect_identical(tail(out, 1), "ok 3")
})

test_that("a frame written by Python is read by R with equal values", {
  skip_without_python()
  server <- start_metastore()
  run_python(server, '
import datetime as dt
import pandas as pd
import batchstore as bs

df = pd.DataFrame({
    "num": [1.25, None, 3.0],
    "int": pd.array([7, None, -1], dtype="Int64"),
    "big": [2**40, 1, 2],
    "lgl": [True, False, True],
    "chr": ["a", None, "\\u00fc"],
    "cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "mid", "hi"], ordered=True),
    "day": [dt.date(2016, 10, 31), None, dt.date(2020, 2, 29)],
    "at": pd.to_datetime(["2024-01-02 03:04:05.25", None, "2000-01-01"], format="ISO8601").tz_localize("UTC"),
})
bs.store_dataframe(df, "xl", "from_py", {"d": dt.date(2016, 10, 31)})
bs.store_dataframe(df.head(1), "xl", "by_int", {"ds": 20161031})
')
  df <- sf_reader("xl", "from_py", c(d = as.Date("2016-10-31")))
  expected <- data.frame(
    num = c(1.25, NA, 3),
    int = c(7L, NA, -1L),
    big = c(2^40, 1, 2),
    lgl = c(TRUE, FALSE, TRUE),
    chr = c("a", NA, "\u00fc"),
    cat = factor(c("lo", "hi", "lo"), levels = c("lo", "mid", "hi"), ordered = TRUE),
    day = as.Date(c("2016-10-31", NA, "2020-02-29")),
    at = as.POSIXct(c("2024-01-02 03:04:05.25", NA, "2000-01-01 00:00:00"), tz = "UTC")
  )
  expect_identical(df, expected)
  expect_identical(nrow(sf_reader("xl", "by_int", c(ds = 20161031))), 1L)
  expect_identical(sf_reader("xl", "from_py", c(d = "2016-10-31")), df)
})

test_that("text R cannot hold (an embedded NUL) is a batchstore_data error, not a crash", {
  skip_without_python()
  server <- start_metastore()
  run_python(server, '
import pandas as pd
import batchstore as bs
bs.store_dataframe(pd.DataFrame({"s": ["fine", "bad\\x00text"], "n": [1, 2]}), "xl", "nul", {"ds": 1})
')
  error <- expect_error(sf_reader("xl", "nul", c(ds = 1L)), class = "batchstore_data")
  expect_match(conditionMessage(error), "NUL")
  expect_identical(sf_reader("xl", "nul", c(ds = 1L), columns = "n"), data.frame(n = 1:2))
})

test_that("R, Python and tablectl name the same partitions and create the same tables", {
  skip_without_python()
  server <- start_metastore()
  one <- data.frame(v = 1L)
  # Tables created by a first write: R from a whole double, Python from a whole float, each
  # from a Date and a logical. The key types must agree.
  sf_writer(one, "xl", "r_num", partitions = c(ds = 20161031))
  sf_writer(one, "xl", "r_day", partitions = list(day = as.Date("2016-10-31"), flag = TRUE))
  parquet <- file.path(server$dir, "one.parquet")
  out <- run_python(server, paste0('
import datetime as dt
import numpy as np
import pandas as pd
import batchstore as bs

one = pd.DataFrame({"v": pd.array([1], dtype="int32")})
bs.store_dataframe(one, "xl", "py_num", {"ds": 20161031.0})
bs.store_dataframe(one, "xl", "py_day", {"day": dt.date(2016, 10, 31), "flag": True})
# The R tables again, from Python values of other host types: the same partitions.
bs.store_dataframe(one, "xl", "r_num", {"ds": np.int64(20161031)})
bs.store_dataframe(one, "xl", "r_num", [np.float64(20161101)])
bs.store_dataframe(one, "xl", "r_day", {"day": dt.date(2016, 10, 31), "flag": np.bool_(True)})
for name in ("r_num", "py_num", "r_day", "py_day"):
    keys = bs.connect().describe_table("xl", name)["partition_keys"]
    print(name, " ".join(f"{k}:{t}" for k, t in keys))
try:
    bs.load_dataframe("xl", "r_num", version=1, tag="x")
except bs.InvalidArgument as error:
    print("selector:", error)
import pyarrow as pa, pyarrow.parquet as pq
pq.write_table(pa.table({"v": pa.array([1], pa.int32())}), "', parquet, '")
'))
  expect_identical(out[1:4], c("r_num ds:int64", "py_num ds:int64", "r_day day:date flag:string",
                               "py_day day:date flag:string"))
  expect_match(out[5], "at most one of version, batch_id, tag and as_of", fixed = TRUE)
  run_tablectl(server, "write", "xl.py_num", "-p", "ds=20161031", parquet)
  run_tablectl(server, "write", "xl.r_num", "-p", "20161101", parquet)
  expect_setequal(sf_tables("xl"), c("xl.r_num", "xl.py_num", "xl.r_day", "xl.py_day"))
  for (name in c("r_num", "py_num")) {
    expect_identical(sf_partitions("xl", name)$partition,
                     if (name == "r_num") c("ds=20161031", "ds=20161101") else "ds=20161031")
  }
  expect_identical(sf_partitions("xl", "r_day")$partition, "day=2016-10-31/flag=true")
  expect_identical(sf_history("xl", "r_num", c(ds = 20161031L))$version, c(2L, 1L))
  expect_identical(sf_history("xl", "r_num", list(ds = 20161101))$version, c(2L, 1L))
  expect_identical(sf_history("xl", "py_num", "20161031")$version, c(2L, 1L))
  r_error <- tryCatch(sf_reader("xl", "r_num", version = 1, tag = "x"), error = identity)
  expect_s3_class(r_error, "batchstore_invalid_argument")
  expect_identical(conditionMessage(r_error), sub("^selector: ", "", out[5]))
})
