namespace Vfio.E2E.Tests;

/// <summary>vfio hugepages reserve against the real kernel.</summary>
[Trait("lab", Lab.NoIommu)]
public sealed class CliMoreNoIommuTests
{
    [Fact]
    public void HugepagesReserveReportsWhatTheKernelGranted()
    {
        var pool = VfioCli.Json("hugepages", "status").GetProperty("pools").EnumerateArray()
            .Single(p => p.GetProperty("pageSize").GetUInt64() == 2UL << 20);
        long total = pool.GetProperty("total").GetInt64();
        try
        {
            var reserve = VfioCli.Json("hugepages", "reserve", (total + 8).ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(total + 8, reserve.GetProperty("requested").GetInt64());
            Assert.Equal(total + 8, reserve.GetProperty("granted").GetInt64());
            Assert.True(reserve.GetProperty("complete").GetBoolean());
            Assert.Equal((total + 8).ToString(System.Globalization.CultureInfo.InvariantCulture), Lab.ReadTrimmed("/proc/sys/vm/nr_hugepages"));
        }
        finally
        {
            VfioCli.Json("hugepages", "reserve", total.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}

[Trait("lab", Lab.NoIommuOff)]
public sealed class CliNoIommuEnableTests
{
    [Fact]
    public void EnableWithUnsafeTurnsTheParameterOn()
    {
        try
        {
            var status = VfioCli.Json("noiommu", "enable", "--unsafe");
            Assert.True(status.GetProperty("enabled").GetBoolean());
            Assert.True(status.GetProperty("changed").GetBoolean());
            Assert.Equal("Y", Lab.ReadTrimmed(Lab.NoIommuParam));
        }
        finally
        {
            File.WriteAllText(Lab.NoIommuParam, "N");   // the other tests of this guest need it off
        }
        Assert.Equal("N", Lab.ReadTrimmed(Lab.NoIommuParam));
    }
}
