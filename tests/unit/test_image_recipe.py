import shutil

import pytest

from availlab.errors import ImageError
from availlab.lab import image, recipe


def test_digest_is_stable():
    assert recipe.load_recipe().digest() == recipe.load_recipe().digest()
    assert len(recipe.load_recipe().digest()) == 16


def test_digest_covers_every_recipe_file(tmp_path):
    copy = tmp_path / "guest"
    shutil.copytree(recipe.guest_dir(), copy)
    before = recipe.load_recipe(copy).digest()
    assert before == recipe.load_recipe().digest()
    hook = copy / "hooks" / "customize01-availlab.sh"
    hook.write_text(hook.read_text() + "\n# changed\n")
    assert recipe.load_recipe(copy).digest() != before
    (copy / "extra.conf").write_text("x")
    assert len({before, recipe.load_recipe(copy).digest()}) == 2


def test_digest_covers_packages_and_version():
    r = recipe.load_recipe()
    assert recipe.Recipe(files=r.files, packages=r.packages + ("vim",)).digest() != r.digest()
    assert recipe.Recipe(files=r.files, version=r.version + 1).digest() != r.digest()


def test_recipe_has_what_the_lab_needs():
    r = recipe.load_recipe()
    for pkg in ("postgresql-15", "qemu-guest-agent", "linux-image-cloud-amd64", "initramfs-tools"):
        assert pkg in r.packages
    assert "init.sh" in r.files


def test_cache_location_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAILLAB_CACHE", str(tmp_path))
    r = recipe.load_recipe()
    assert recipe.image_dir(r) == tmp_path / "images" / r.digest()
    assert recipe.cached_image(r) is None  # nothing built there: never a half image


def test_missing_recipe_is_a_clear_error(tmp_path):
    with pytest.raises(ImageError, match="init.sh is missing"):
        recipe.load_recipe(tmp_path)


def test_sources_come_from_the_host_apt_config():
    srcs = image.host_apt_sources()
    assert srcs and all(str(p).startswith("/etc/apt/") for p in srcs)


def test_no_registry_host_is_written_into_the_recipe():
    text = "".join(p.read_text() for p in recipe.guest_dir().rglob("*") if p.is_file())
    text += open(image.__file__).read() + open(recipe.__file__).read()
    for host in ("deb.debian.org", "security.debian.org", "ftp.debian.org", "pypi.org"):
        assert host not in text


def test_each_database_has_its_own_image_and_an_unknown_one_is_refused():
    from availlab.errors import UsageError

    pg, my = recipe.load_recipe(), recipe.load_recipe(database="mariadb")
    assert "postgresql-15" in pg.packages and "mariadb-server" in my.packages
    assert "postgresql-15" not in my.packages and pg.digest() != my.digest()
    with pytest.raises(UsageError, match="database: no lab guest image for 'sqlserver'"):
        recipe.load_recipe(database="sqlserver")
