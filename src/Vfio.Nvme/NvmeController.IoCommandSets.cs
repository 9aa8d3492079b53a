using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>
/// The I/O command set structures (NVMe 2.0 §5.17.2): the NVM command set's own Identify Controller (CNS 06h, CSI
/// 00h) and the command set combinations (CNS 1Ch), on controllers that report I/O command sets (CAP.CSS bit 6).
/// </summary>
public sealed partial class NvmeController
{
    /// <summary>
    /// The NVM Command Set specific Identify Controller structure (Write Zeroes, Verify and Dataset Management limits), or
    /// null when the controller reports no I/O command sets (CAP.CSS bit 6 clear: CNS 06h is reserved there).
    /// </summary>
    /// <exception cref="NvmeCommandException">The controller refused the command.</exception>
    public NvmIdentifyController? IdentifyNvmCommandSet()
    {
        if (!Capabilities.SupportsIoCommandSets) { return null; }
        var data = new byte[NvmIdentifyController.Size];
        ExecuteAdmin(NvmeCommand.Identify(IdentifyCns.IoCommandSetController, 0, CommandSetIdentifier.Nvm, default, default), data, NvmeDataDirection.FromDevice);
        return NvmIdentifyController.Parse(data);
    }

    /// <summary>The I/O command set combinations the controller supports (CNS 1Ch): index and CSI bit vector of each.</summary>
    /// <exception cref="NvmeException">The controller reports no I/O command sets (CAP.CSS bit 6 clear).</exception>
    public IReadOnlyList<(int Index, ulong Vector)> GetIoCommandSetCombinations()
    {
        if (!Capabilities.SupportsIoCommandSets)
        {
            throw new NvmeException("the controller reports no I/O command sets (CAP.CSS bit 6 is clear), so it has no I/O Command Set data structure (Identify CNS 1Ch)",
                _device.Address);
        }
        var data = new byte[IoCommandSetCombinations.Size];
        ExecuteAdmin(NvmeCommand.Identify(IdentifyCns.IoCommandSetCombinations, 0, default, default), data, NvmeDataDirection.FromDevice);
        return IoCommandSetCombinations.Parse(data);
    }
}
