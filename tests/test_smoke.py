from logstore import Store


def test_write_then_read_back_after_reopen(data_dir):
    with Store(data_dir) as store:
        store.create_topic("orders")
        assert store.write("orders", b"hello") == 0
    with Store(data_dir) as store:
        [message] = store.read("orders", 0)
        assert (message.offset, message.value) == (0, b"hello")
