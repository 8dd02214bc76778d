import shutil

import pytest

from availlab.vm import image
from availlab.errors import ImageError


def test_digest_is_stable():
    assert image.load_recipe().digest() == image.load_recipe().digest()
    assert len(image.load_recipe().digest()) == 16


def test_digest_covers_every_recipe_file(tmp_path):
    copy = tmp_path / "guest"
    shutil.copytree(image.guest_dir(), copy)
    before = image.load_recipe(copy).digest()
    assert before == image.load_recipe().digest()
    hook = copy / "hooks" / "customize01-availlab.sh"
    hook.write_text(hook.read_text() + "\n# changed\n")
    assert image.load_recipe(copy).digest() != before
    (copy / "extra.conf").write_text("x")
    assert len({before, image.load_recipe(copy).digest()}) == 2


def test_digest_covers_packages_and_version():
    r = image.load_recipe()
    assert image.Recipe(files=r.files, packages=r.packages + ("vim",)).digest() != r.digest()
    assert image.Recipe(files=r.files, version=r.version + 1).digest() != r.digest()


def test_recipe_has_what_the_lab_needs():
    r = image.load_recipe()
    for pkg in ("postgresql-15", "qemu-guest-agent", "linux-image-cloud-amd64", "initramfs-tools"):
        assert pkg in r.packages
    assert "init.sh" in r.files


def test_cache_location_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_CACHE", str(tmp_path))
    r = image.load_recipe()
    assert image.image_dir(r) == tmp_path / "images" / r.digest()
    assert image.cached_image(r) is None  # nothing built there: never a half image


def test_missing_recipe_is_a_clear_error(tmp_path):
    with pytest.raises(ImageError, match="init.sh is missing"):
        image.load_recipe(tmp_path)


def test_sources_come_from_the_host_apt_config():
    srcs = image.host_apt_sources()
    assert srcs and all(str(p).startswith("/etc/apt/") for p in srcs)


def test_no_registry_host_is_written_into_the_recipe():
    text = "".join(p.read_text() for p in image.guest_dir().rglob("*") if p.is_file())
    text += open(image.__file__).read()
    for host in ("deb.debian.org", "security.debian.org", "ftp.debian.org", "pypi.org"):
        assert host not in text


def test_each_database_has_its_own_image_and_an_unknown_one_is_refused():
    from availlab.errors import UsageError

    pg, my = image.load_recipe(), image.load_recipe(database="mariadb")
    assert "postgresql-15" in pg.packages and "mariadb-server" in my.packages
    assert "postgresql-15" not in my.packages and pg.digest() != my.digest()
    with pytest.raises(UsageError, match="database: no lab guest image for 'sqlserver'"):
        image.load_recipe(database="sqlserver")
