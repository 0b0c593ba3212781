"""Amazon review files (2014 Python-literal lines, 2018 JSON lines) to RecBole atomic files, through the CLI too."""

import gzip
import os

import pytest
from recbole.data import create_dataset

from recbole_transfer.data.amazon import k_core, read_reviews, write_amazon_pair
from recbole_transfer.errors import TransferDataError
from recbole_transfer.request import domain_config
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "amazon")
BOOKS, MOVIES = os.path.join(FIXTURES, "books_2014.json"), os.path.join(FIXTURES, "movies_2018.json")


def test_both_formats_parse_and_empty_reviews_are_dropped():
    books, dropped_books = read_reviews(BOOKS)
    movies, dropped_movies = read_reviews(MOVIES)
    assert (len(books), dropped_books, len(movies), dropped_movies) == (40, 1, 40, 1)
    assert set(books["user"]) & set(movies["user"]) == {f"A{n:03d}" for n in range(2, 10)}
    assert books["text"].str.match(r"^[a-z0-9' ]+$").all() and books["rating"].between(1, 5).all()


def test_python_literal_lines_are_never_evaluated(tmp_path):
    path = tmp_path / "evil.json"
    path.write_text("{'reviewerID': __import__('os').getcwd(), 'asin': 'B1', 'overall': 5.0, 'reviewText': 'x'}\n")
    with pytest.raises(TransferDataError, match="line 1: neither JSON nor a Python dict literal"):
        read_reviews(str(path))


def test_gzip_files_and_the_k_core_filter(tmp_path):
    gz = tmp_path / "movies.json.gz"
    with open(MOVIES, "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    frame, _ = read_reviews(str(gz))
    core = k_core(frame, min_item=7, min_user=4)
    assert (core["item"].value_counts() >= 7).all() and (core["user"].value_counts() >= 4).all()
    assert len(core) < len(frame)


def test_written_domains_round_trip_through_recbole(tmp_path):
    counts = write_amazon_pair(BOOKS, MOVIES, str(tmp_path), ("books", "movies"), min_item_reviews=2, min_user_reviews=2)
    assert counts == {"books": (10, 6, 40, 1), "movies": (10, 6, 40, 1)}
    config = domain_config("BPR", "movies", None, {"data_path": str(tmp_path), "show_progress": False,
                                                   "load_col": {"inter": ["user_id", "item_id", "rating", "review"]}})
    dataset = create_dataset(config)
    assert dataset.inter_num == 40 and "review" in dataset.field2id_token
    first = read_reviews(MOVIES)[0].sort_values(["user", "timestamp", "item"], kind="stable").iloc[0]
    tokens = dataset.field2id_token["review"]
    ids = list(dataset.inter_feat["review"].iloc[0])  # the file's first row, as RecBole loaded it
    assert " ".join(tokens[i] for i in ids if i) == first["text"]
    assert dataset.id2token("user_id", int(dataset.inter_feat["user_id"].iloc[0])) == first["user"]
    with pytest.raises(TransferDataError, match="no review is left after the filters"):
        write_amazon_pair(BOOKS, MOVIES, str(tmp_path / "x"), min_item_reviews=100, min_user_reviews=1)


def test_cli_runs_catn_on_review_files_and_refuses_bad_input(run_cli, tmp_path):
    common = ["--model=CATN", "--data=amazon", "--min_item_reviews=2", "--min_user_reviews=2", "--epochs=1", "--word_dim=8",
              f"--review_dir={tmp_path / 'reviews'}", f"--protocol_dir={tmp_path / 'p'}"]
    code, out, err = run_cli(common + [f"--source_file={BOOKS}", f"--target_file={MOVIES}"], cwd=tmp_path)
    assert code == 0, err[-800:]
    assert "amazon_target: 10 users, 6 items, 40 reviews (1 dropped: an empty field)" in out
    assert "users in both 8" in out and "CATN on amazon_target (cold_start eta=1, task rating), test: rmse" in out
    assert "| aspect | source | target |" in out and "G (source aspect x target aspect)" in out  # the aspect report
    png = out.split("heatmap of G: ")[1].split()[0]
    assert os.path.isfile(png) and open(png, "rb").read(4) == b"\x89PNG"
    bad = os.path.join(FIXTURES, "not_reviews.txt")
    for args, message in (([f"--source_file={bad}", f"--target_file={MOVIES}"], "neither JSON nor a Python dict literal"),
                          ([f"--source_file={BOOKS}"], "give both review files"),
                          ([f"--source_file={BOOKS}", f"--target_file={tmp_path / 'none.json'}"], "not found")):
        code, _out, err = run_cli(common + args, cwd=tmp_path)
        assert code == 2 and message in err, (args, err[-400:])


def test_word_vectors_come_from_the_users_file_and_must_match_word_dim(run_cli, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("3 8\nplot " + " ".join(["0.5"] * 8) + "\nacting " + " ".join(["-0.25"] * 8) + "\nzzz " + " ".join(["1"] * 8) + "\n")
    common = ["--model=CATN", "--data=amazon", "--min_item_reviews=2", "--min_user_reviews=2", "--epochs=1",
              f"--review_dir={tmp_path / 'reviews'}", f"--protocol_dir={tmp_path / 'p'}",
              f"--source_file={BOOKS}", f"--target_file={MOVIES}", f"--word_vectors={vectors}"]
    code, _out, err = run_cli(common + ["--word_dim=16"], cwd=tmp_path)
    assert code == 2 and "has 8 numbers, but word_dim is 16" in err
    from recbole_transfer.methods.overlap_cdr.models.catn import load_word_vectors
    found = load_word_vectors(str(vectors), ["[PAD]", "acting", "plot", "story"], 8)
    assert sorted(found) == [1, 2] and float(found[2][0]) == 0.5 and float(found[1][3]) == -0.25
    code, _out, err = run_cli(common + ["--word_dim=8"], cwd=tmp_path)
    assert code == 0, err[-600:]


@pytest.mark.ray
def test_a_rating_search_selects_the_smallest_validation_rmse(run_cli, tmp_path):
    import json

    space = tmp_path / "space.yaml"
    space.write_text("scheduler: {type: fifo}\nscratch_margin: 0\nbranches:\n  CATN:\n"
                     "    learning_rate: {type: grid, values: [0.001, 0.02]}\n")
    code, out, err = run_cli(["--model=CATN", "--tune", "--data=amazon", "--min_item_reviews=2", "--min_user_reviews=2",
                              "--epochs=2", "--word_dim=8", f"--review_dir={tmp_path / 'reviews'}", f"--search_space={space}",
                              f"--run_dir={tmp_path / 'search'}", "--num_cpus=2", f"--source_file={BOOKS}",
                              f"--target_file={MOVIES}"], cwd=tmp_path)
    assert code == 0, (out[-1500:], err[-1500:])
    result = json.loads((tmp_path / "search" / "amazon_target" / "result.json").read_text())
    rows = result["rows"]
    assert result["metric"] == "valid_neg_rmse" and len(rows) == 2 and all(r["best_valid"] < 0 for r in rows)
    assert result["best"]["best_valid"] == max(r["best_valid"] for r in rows)  # the smallest RMSE wins
    assert "rmse" in result["test_result"]
