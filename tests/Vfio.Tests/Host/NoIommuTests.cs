using Vfio.Host;

namespace Vfio.Tests.Host;

public sealed class NoIommuTests : IDisposable
{
    private readonly FakeSysfs _fs = new();

    public void Dispose() => _fs.Dispose();

    [Fact]
    public void Without_the_vfio_module_nothing_is_supported()
    {
        var s = _fs.Host().GetNoIommuState();

        Assert.False(s.VfioModuleLoaded);
        Assert.False(s.ParameterPresent);
        Assert.Null(s.Enabled);
        Assert.False(s.IsSupported);
        Assert.False(s.IsEnabled);
        Assert.Contains("modprobe vfio", s.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void Vfio_without_the_parameter_means_a_kernel_without_CONFIG_VFIO_NOIOMMU()
    {
        _fs.VfioModule(noIommuParameter: null);
        var s = _fs.Host().GetNoIommuState();

        Assert.True(s.VfioModuleLoaded);
        Assert.False(s.ParameterPresent);
        Assert.Null(s.Enabled);
        Assert.False(s.IsSupported);
        Assert.Contains("CONFIG_VFIO_NOIOMMU", s.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void Parameter_N_is_supported_but_off()
    {
        _fs.VfioModule("N");
        var s = _fs.Host().GetNoIommuState();

        Assert.True(s.IsSupported);
        Assert.False(s.Enabled);
        Assert.False(s.IsEnabled);
        Assert.Contains("echo Y", s.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void Parameter_Y_is_on_and_dev_nodes_are_reported()
    {
        _fs.VfioModule("Y").DevNode("vfio/vfio").DevNode("iommu").Driver("vfio-pci");
        var s = _fs.Host().GetNoIommuState();

        Assert.True(s.IsEnabled);
        Assert.True(s.ContainerDeviceExists);
        Assert.True(s.IommufdDeviceExists);
        Assert.True(s.VfioPciDriverLoaded);
        Assert.Contains("ON", s.Summary, StringComparison.Ordinal);
        Assert.DoesNotContain("missing", s.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void Parameter_Y_without_the_container_says_it_is_missing()
    {
        _fs.VfioModule("Y");
        var s = _fs.Host().GetNoIommuState();
        Assert.False(s.ContainerDeviceExists);
        Assert.False(s.IommufdDeviceExists);
        Assert.Contains("/dev/vfio/vfio is missing", s.Summary, StringComparison.Ordinal);
    }

    [Fact]
    public void Enable_refuses_without_acknowledgement_and_writes_nothing()
    {
        _fs.VfioModule("N");
        var kernel = new FakeKernel(_fs);

        var e = Assert.Throws<VfioException>(() => _fs.Host(kernel).EnableNoIommuMode(acknowledgeUnsafe: false));

        Assert.Contains("acknowledgeUnsafe: true", e.Message, StringComparison.Ordinal);
        Assert.Contains("DMA", e.Message, StringComparison.Ordinal);
        Assert.Empty(kernel.Writes);
        Assert.Equal("N", _fs.ReadNoIommuParameter());
    }

    [Fact]
    public void Enable_with_acknowledgement_writes_Y()
    {
        _fs.VfioModule("N");
        var kernel = new FakeKernel(_fs);
        var host = _fs.Host(kernel);

        host.EnableNoIommuMode(acknowledgeUnsafe: true);

        Assert.Equal([("module/vfio/parameters/enable_unsafe_noiommu_mode", "Y")], kernel.Writes);
        Assert.True(host.GetNoIommuState().IsEnabled);
    }

    [Fact]
    public void Enable_when_already_on_writes_nothing()
    {
        _fs.VfioModule("Y");
        var kernel = new FakeKernel(_fs);
        _fs.Host(kernel).EnableNoIommuMode(acknowledgeUnsafe: true);
        Assert.Empty(kernel.Writes);
    }

    [Fact]
    public void Enable_without_the_parameter_says_the_kernel_lacks_CONFIG_VFIO_NOIOMMU()
    {
        _fs.VfioModule(noIommuParameter: null);
        var kernel = new FakeKernel(_fs);
        var e = Assert.Throws<VfioUnavailableException>(() => _fs.Host(kernel).EnableNoIommuMode(acknowledgeUnsafe: true));
        Assert.Contains("CONFIG_VFIO_NOIOMMU", e.Message, StringComparison.Ordinal);
        Assert.Contains("does not build or load kernel modules", e.Message, StringComparison.Ordinal);
        Assert.Empty(kernel.Writes);
    }

    [Fact]
    public void Enable_without_the_module_says_to_load_it()
    {
        var e = Assert.Throws<VfioUnavailableException>(() => _fs.Host(new FakeKernel(_fs)).EnableNoIommuMode(acknowledgeUnsafe: true));
        Assert.Contains("modprobe vfio enable_unsafe_noiommu_mode=1", e.Message, StringComparison.Ordinal);
        Assert.Contains("does not load kernel modules", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Enable_when_not_root_is_a_permission_error_naming_the_file()
    {
        _fs.VfioModule("N");
        var writer = new FailingWriter(p => new UnauthorizedAccessException($"Access to the path '{p}' is denied."));
        var e = Assert.Throws<VfioPermissionException>(() => _fs.Host(writer).EnableNoIommuMode(acknowledgeUnsafe: true));
        Assert.Contains("enable_unsafe_noiommu_mode", e.Message, StringComparison.Ordinal);
        Assert.Equal(Errno.EACCES, e.ErrorNumber);
    }
}
