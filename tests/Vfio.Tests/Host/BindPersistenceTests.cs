using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class BindPersistenceTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vfio-persist-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Persist_writes_a_udev_rule_setting_driver_override_and_remove_deletes_it()
    {
        var device = new PciAddress(0, 0x01, 0x00, 0);
        var persistence = new BindPersistence(_root);

        Assert.False(persistence.IsPersisted(device));
        string path = persistence.Persist(device);

        Assert.StartsWith(Path.Combine(_root, "etc", "udev", "rules.d"), path);
        Assert.DoesNotContain(':', Path.GetFileName(path));
        string text = File.ReadAllText(path);
        Assert.Contains($"KERNEL==\"{device}\"", text);
        Assert.Contains("ATTR{driver_override}=\"vfio-pci\"", text);
        Assert.True(persistence.IsPersisted(device));
        Assert.False(File.Exists(path + ".tmp"));

        Assert.True(persistence.Remove(device));
        Assert.False(File.Exists(path));
        Assert.False(persistence.Remove(device));
    }

    [Fact]
    public void Persisting_twice_keeps_one_rule_and_other_devices_are_untouched()
    {
        var a = new PciAddress(0, 0x01, 0x00, 0);
        var b = new PciAddress(0, 0x02, 0x00, 0);
        var persistence = new BindPersistence(_root);

        persistence.Persist(a);
        persistence.Persist(a);
        persistence.Persist(b);
        persistence.Remove(a);

        Assert.Single(Directory.GetFiles(Path.Combine(_root, "etc", "udev", "rules.d")));
        Assert.True(persistence.IsPersisted(b));
    }

    [Fact]
    public void A_rules_folder_that_cannot_be_made_is_a_VfioException_naming_the_rule()
    {
        var device = new PciAddress(0, 0x01, 0x00, 0);
        Directory.CreateDirectory(Path.Combine(_root, "etc", "udev"));
        File.WriteAllText(Path.Combine(_root, "etc", "udev", "rules.d"), "not a folder");

        var e = Assert.Throws<VfioException>(() => new BindPersistence(_root).Persist(device));

        Assert.Equal(device, e.Device);
        Assert.Contains("write the udev rule", e.Message, StringComparison.Ordinal);
    }
}
