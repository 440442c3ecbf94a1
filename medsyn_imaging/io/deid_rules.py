"""The rules of DICOM de-identification: PS3.15 Table E.1-1 (as data) and MedSyn's allowlist.

* :func:`table` — every attribute of PS3.15 Annex E Table E.1-1 (DICOM 2024b, 621 rows) with its Basic
  Profile action and the actions of the profile options, read from ``data/ps3_15_table_e1_1.json``
  (innolitics/dicom-standard, MIT; provenance in docs/deidentification.md). Actions: ``D`` dummy value,
  ``Z`` zero length, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` new UID, and the combined ``X/Z``,
  ``X/D``, ``X/Z/D``, ``Z/D``, ``X/Z/U*`` (the choice depends on the attribute's type in the IOD).
* :data:`TABLE_ADDITIONS` — the 35 rows the table gained up to DICOM 2026c (Basic Profile action only).
* :data:`SUPPLEMENT` — attributes MedSyn treats like table rows although the table does not list them
  (free text that the table leaves to the Clean Structured Content option or never names).
* :data:`SAFE` — the allowlist: attributes NOT in the table that an image needs to be displayed and
  interpreted (pixel description, geometry, acquisition physics, SOP class, coded concepts, structure of
  enhanced multi-frame, RT, SR and waveform objects). They are kept as they are, except that UIDs that
  are not DICOM-defined are replaced. Every other attribute is removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydicom.datadict import keyword_for_tag, tag_for_keyword

TABLE_FILE = Path(__file__).parent / "data" / "ps3_15_table_e1_1.json"
TABLE_VERSION = ("DICOM PS3.15 Table E.1-1, 2024b (innolitics/dicom-standard @ 7f4749d) "
                 "+ 35 rows added up to 2026c")

#: Profile option name -> column of the table.
OPTION_COLUMNS = {
    "retain_longitudinal_modified_dates": "rtnLongModifDatesOpt",
    "retain_patient_characteristics": "rtnPatCharsOpt",
    "retain_device_identity": "rtnDevIdOpt",
    "clean_descriptors": "cleanDescOpt",
}


@dataclass(frozen=True)
class Rule:
    """What to do with one attribute: the Basic Profile action and the options' actions."""

    name: str
    basic: str
    options: dict[str, str] = field(default_factory=dict)  # option name -> action (K or C)


def _parse_tag(text: str) -> int | None:
    group, element = text.strip("()").split(",")
    try:
        return int(group + element, 16)
    except ValueError:  # (50XX,XXXX), (60XX,3000), "(GGGG,EEEE) where GGGG is odd": handled by rules
        return None


@cache
def table() -> dict[int, Rule]:
    """Table E.1-1 as ``{tag: Rule}`` (rows with repeating groups are handled by code, not here)."""
    rows = json.loads(TABLE_FILE.read_text(encoding="utf-8"))
    out: dict[int, Rule] = {}
    for row in rows:
        tag = _parse_tag(row["tag"])
        if tag is None:
            continue
        options = {name: row[column] for name, column in OPTION_COLUMNS.items() if row.get(column)}
        out[tag] = Rule(" ".join(row["name"].split()), row["basicProfile"], options)
    return out


#: Rows added to Table E.1-1 between 2024b and 2026c (Basic Profile action only; the option columns of
#: these rows are not carried). Source: DICOM PS3.15 2026c as transcribed in dicom-anonymizer 2.1.0
#: (``dicom_anonymization_databases/dicomfields_2026c.py``, BSD-3-Clause, Kitware Europe).
TABLE_ADDITIONS: dict[int, Rule] = {
    0x00081301: Rule("Principal Diagnosis Code Sequence", "X"),
    0x00081302: Rule("Primary Diagnosis Code Sequence", "X"),
    0x00081303: Rule("Secondary Diagnoses Code Sequence", "X"),
    0x00081304: Rule("Histological Diagnoses Code Sequence", "X"),
    0x00100011: Rule("Person Names to Use Sequence", "X"),
    0x00100012: Rule("Name to Use", "X"),
    0x00100013: Rule("Name to Use Comment", "X"),
    0x00100014: Rule("Third Person Pronouns Sequence", "X"),
    0x00100015: Rule("Pronoun Code Sequence", "X"),
    0x00100016: Rule("Pronoun Comment", "X"),
    0x00100041: Rule("Gender Identity Sequence", "X"),
    0x00100042: Rule("Sex Parameters for Clinical Use Category Comment", "X"),
    0x00100043: Rule("Sex Parameters for Clinical Use Category Sequence", "X"),
    0x00100044: Rule("Gender Identity Code Sequence", "X"),
    0x00100045: Rule("Gender Identity Comment", "X"),
    0x00100046: Rule("Sex Parameters for Clinical Use Category Code Sequence", "X"),
    0x00100047: Rule("Sex Parameters for Clinical Use Category Reference", "X"),
    0x00102161: Rule("Ethnic Group Code Sequence", "X"),
    0x00102162: Rule("Ethnic Groups", "X"),
    0x00181010: Rule("Secondary Capture Device ID", "X"),
    0x00181011: Rule("Hardcopy Creation Device ID", "X"),
    0x003A0020: Rule("Multiplex Group Label", "X"),
    0x003A0203: Rule("Channel Label", "X"),
    0x003A020C: Rule("Channel Derivation Description", "X"),
    0x00400556: Rule("Acquisition Context Description", "X"),
    0x0040A034: Rule("Effective Start DateTime", "X"),
    0x0040A035: Rule("Effective Stop DateTime", "X"),
    0x0040B020: Rule("Waveform Annotation Sequence", "X/D"),
    0x0040B034: Rule("Annotation DateTime", "X"),
    0x0040B036: Rule("Segment Definition DateTime", "X"),
    0x0040B03B: Rule("Montage Name", "X"),
    0x0040B03F: Rule("Montage Channel Label", "X"),
    0x0040E012: Rule("Display URI", "X"),
    0x00700006: Rule("Unformatted Text Value", "D"),
    0x300A0054: Rule("Table Top Position Alignment UID", "U"),
}

#: Free text the table does not name (or leaves to options MedSyn does not offer): D keeps a type-1
#: attribute valid with a dummy value; X removes it.
SUPPLEMENT: dict[str, Rule] = {
    "TextValue": Rule("Text Value (SR free text)", "D"),
    "SegmentLabel": Rule("Segment Label", "D", {"clean_descriptors": "C"}),
    "SegmentDescription": Rule("Segment Description", "X", {"clean_descriptors": "C"}),
    "SegmentAlgorithmName": Rule("Segment Algorithm Name", "D", {"clean_descriptors": "C"}),
    "ContentDescription": Rule("Content Description", "Z", {"clean_descriptors": "C"}),
    "ContentLabel": Rule("Content Label", "D", {"clean_descriptors": "C"}),
    "BeamName": Rule("Beam Name", "X", {"clean_descriptors": "C"}),
    "WindowCenterWidthExplanation": Rule("Window Center & Width Explanation", "X",
                                         {"clean_descriptors": "C"}),
    "LUTExplanation": Rule("LUT Explanation", "X", {"clean_descriptors": "C"}),
    "DimensionDescriptionLabel": Rule("Dimension Description Label", "X", {"clean_descriptors": "C"}),
    "PatientBirthDateInAlternativeCalendar": Rule("Patient's Birth Date in Alternative Calendar", "X"),
    "PatientDeathDateInAlternativeCalendar": Rule("Patient's Death Date in Alternative Calendar", "X"),
    "PatientAlternativeCalendar": Rule("Patient's Alternative Calendar", "X"),
}

# -- the allowlist ------------------------------------------------------------------------------------
_SOP_AND_IMAGE = """
SpecificCharacterSet SOPClassUID ImageType InstanceNumber ContentQualification QualityControlImage
BurnedInAnnotation RecognizableVisualFeatures LossyImageCompression LossyImageCompressionRatio
LossyImageCompressionMethod PresentationLUTShape Modality SeriesNumber AcquisitionNumber Laterality
ImageLaterality BodyPartExamined PatientPosition ViewPosition PatientOrientation ConversionType
Manufacturer ManufacturerModelName SoftwareVersions SpatialResolution PositionReferenceIndicator
ModalitiesInStudy ImagesInAcquisition CorrectedImage AnatomicRegionSequence
AnatomicRegionModifierSequence PrimaryAnatomicStructureSequence PrimaryAnatomicStructureModifierSequence
DerivationCodeSequence PurposeOfReferenceCodeSequence ReferencedSOPClassUID ReferencedFrameNumber
ReferencedSegmentNumber TypeOfPatientID LongitudinalTemporalInformationModified PatientIdentityRemoved
ContrastBolusRoute ContrastBolusVolume ContrastBolusTotalDose ContrastFlowRate ContrastFlowDuration
ContrastBolusIngredientConcentration ContrastBolusAgentSequence ContrastBolusAdministrationRouteSequence
SynchronizationTrigger AcquisitionTimeSynchronized TriggerSamplePosition
"""
_PIXELS = """
SamplesPerPixel PhotometricInterpretation Rows Columns BitsAllocated BitsStored HighBit
PixelRepresentation PlanarConfiguration PixelAspectRatio SmallestImagePixelValue LargestImagePixelValue
SmallestPixelValueInSeries LargestPixelValueInSeries PixelPaddingValue PixelPaddingRangeLimit
RedPaletteColorLookupTableDescriptor GreenPaletteColorLookupTableDescriptor
BluePaletteColorLookupTableDescriptor AlphaPaletteColorLookupTableDescriptor
RedPaletteColorLookupTableData GreenPaletteColorLookupTableData BluePaletteColorLookupTableData
AlphaPaletteColorLookupTableData SegmentedRedPaletteColorLookupTableData
SegmentedGreenPaletteColorLookupTableData SegmentedBluePaletteColorLookupTableData
SegmentedAlphaPaletteColorLookupTableData ICCProfile ColorSpace
PixelData FloatPixelData DoubleFloatPixelData FloatPixelPaddingValue DoubleFloatPixelPaddingValue
ExtendedOffsetTable ExtendedOffsetTableLengths NumberOfFrames FrameIncrementPointer FrameTime
FrameTimeVector FrameDelay ActualFrameDuration StartTrim StopTrim RecommendedDisplayFrameRate CineRate
PreferredPlaybackSequencing ImageDimensions PixelIntensityRelationship PixelIntensityRelationshipSign
RescaleIntercept RescaleSlope RescaleType WindowCenter WindowWidth VOILUTFunction VOILUTSequence
ModalityLUTSequence ModalityLUTType LUTDescriptor LUTData PresentationLUTSequence
"""
_GEOMETRY = """
PixelSpacing ImageOrientationPatient ImagePositionPatient SliceThickness SpacingBetweenSlices
SliceLocation ImagerPixelSpacing NominalScannedPixelSpacing PixelSpacingCalibrationType
EstimatedRadiographicMagnificationFactor DistanceSourceToDetector DistanceSourceToPatient
DistanceSourceToIsocenter GantryDetectorTilt TableHeight RotationDirection ImageOrientationSlide
FrameOfReferenceRelationshipSequence
"""
_CT = """
KVP DataCollectionDiameter ReconstructionDiameter ExposureTime XRayTubeCurrent Exposure ExposureInuAs
FilterType GeneratorPower FocalSpots ConvolutionKernel ScanOptions DataCollectionCenterPatient
ReconstructionTargetCenterPatient RevolutionTime SingleCollimationWidth TotalCollimationWidth TableSpeed
TableFeedPerRotation SpiralPitchFactor CTDIvol CTDIPhantomTypeCodeSequence ExposureModulationType
EstimatedDoseSaving ReconstructionAlgorithm AcquisitionType TubeAngle ReconstructionFieldOfView
ReconstructionPixelSpacing ReconstructionAngle ImageFilter AnodeTargetMaterial BodyPartThickness
CompressionForce WaterEquivalentDiameter CalciumScoringMassFactorPatient CalciumScoringMassFactorDevice
MultienergyCTAcquisition ScanArc AngularPosition RadialPosition
"""
_MR = """
ScanningSequence SequenceVariant MRAcquisitionType SequenceName AngioFlag RepetitionTime EchoTime
InversionTime NumberOfAverages ImagingFrequency ImagedNucleus EchoNumbers MagneticFieldStrength
NumberOfPhaseEncodingSteps EchoTrainLength PercentSampling PercentPhaseFieldOfView PixelBandwidth
ReceiveCoilName TransmitCoilName AcquisitionMatrix InPlanePhaseEncodingDirection FlipAngle
VariableFlipAngleFlag SAR dBdt TriggerTime NominalInterval HeartRate CardiacNumberOfImages TriggerWindow
LowRRValue HighRRValue IntervalsAcquired IntervalsRejected BeatRejectionFlag SkipBeats
TemporalPositionIdentifier NumberOfTemporalPositions TemporalResolution DiffusionBValue
DiffusionGradientOrientation DiffusionDirectionality AcquisitionDuration B1rms NumberOfSlices
MRAcquisitionFrequencyEncodingSteps MRAcquisitionPhaseEncodingStepsInPlane
MRAcquisitionPhaseEncodingStepsOutOfPlane ParallelAcquisition ParallelAcquisitionTechnique
ParallelReductionFactorInPlane ParallelReductionFactorOutOfPlane PartialFourier PartialFourierDirection
EchoPulseSequence SteadyStatePulseSequence EchoPlanarPulseSequence SpectrallySelectedSuppression
SpectrallySelectedExcitation SaturationRecovery MagnetizationTransfer T2Preparation BloodSignalNulling
TimeOfFlightContrast ArterialSpinLabelingContrast OversamplingPhase GeometryOfKSpaceTraversal
SegmentedKSpaceTraversal RectilinearPhaseEncodeReordering NumberOfKSpaceTrajectories
ResonantNucleus ApplicableSafetyStandardAgency SpecificAbsorptionRateDefinition
GradientOutputType GradientOutput OperatingModeType OperatingMode OperatingModeSequence CoverageOfKSpace
EffectiveEchoTime FlowCompensation FlowCompensationDirection GradientEchoTrainLength InversionRecovery
KSpaceFiltering MultiPlanarExcitation ParallelReductionFactorSecondInPlane PhaseContrast
PulseSequenceName QuadratureReceiveCoil RFEchoTrainLength ReceiveCoilManufacturerName ReceiveCoilType
ReferencedImageEvidenceSequence SpatialPresaturation SpecificAbsorptionRateSequence
SpecificAbsorptionRateValue Tagging TransmitCoilManufacturerName TransmitCoilType TransmitterFrequency
MRVelocityEncodingSequence VelocityEncodingDirection VelocityEncodingMinimumValue
VelocityEncodingMaximumValue MRSpatialSaturationSequence SlabThickness SlabOrientation MidSlabPosition
DiffusionBMatrixSequence DiffusionGradientDirectionSequence DiffusionAnisotropyType
MultiCoilDefinitionSequence MultiCoilElementName MultiCoilElementUsed MultiCoilConfiguration
InversionTimes TagThickness TagSpacingFirstDimension TagAngleFirstAxis TaggingDelay
MRArterialSpinLabelingSequence
ConstantVolumeFlag FluoroscopyFlag ConvolutionKernelGroup ExposureInmAs XRayTubeCurrentInmA
ExposureTimeInms TablePosition CTAdditionalXRaySourceSequence IrradiationEventIdentificationSequence
"""
_XRAY_US = """
PlateType CassetteOrientation CassetteSize ExposuresOnPlate RelativeXRayExposure Polarity
PresentationIntentType DetectorType DetectorConfiguration DetectorBinning FieldOfViewShape
FieldOfViewDimensions FieldOfViewOrigin FieldOfViewRotation FieldOfViewHorizontalFlip Grid
ExposureIndex TargetExposureIndex DeviationIndex PositionerType PositionerPrimaryAngle
PositionerSecondaryAngle Sensitivity ShutterShape ShutterLeftVerticalEdge ShutterRightVerticalEdge
ShutterUpperHorizontalEdge ShutterLowerHorizontalEdge CenterOfCircularShutter RadiusOfCircularShutter
CollimatorShape CollimatorLeftVerticalEdge CollimatorRightVerticalEdge CollimatorUpperHorizontalEdge
CollimatorLowerHorizontalEdge SequenceOfUltrasoundRegions RegionSpatialFormat RegionDataType
RegionFlags RegionLocationMinX0 RegionLocationMinY0 RegionLocationMaxX1 RegionLocationMaxY1
ReferencePixelX0 ReferencePixelY0 PhysicalUnitsXDirection PhysicalUnitsYDirection
ReferencePixelPhysicalValueX ReferencePixelPhysicalValueY PhysicalDeltaX PhysicalDeltaY
TransducerFrequency TransducerType PulseRepetitionFrequency DopplerCorrectionAngle SteeringAngle
DopplerSampleVolumeXPosition DopplerSampleVolumeYPosition TMLinePositionX0 TMLinePositionY0
TMLinePositionX1 TMLinePositionY1 PixelComponentOrganization PixelComponentMask
PixelComponentRangeStart PixelComponentRangeStop PixelComponentPhysicalUnits PixelComponentDataType
NumberOfTableBreakPoints TableOfXBreakPoints TableOfYBreakPoints NumberOfTableEntries
TableOfPixelValues TableOfParameterValues NumberOfStages NumberOfViewsInStage StageNumber ViewNumber
UltrasoundColorDataPresent MechanicalIndex BoneThermalIndex CranialThermalIndex SoftTissueThermalIndex
DepthOfScanField
"""
_MULTIFRAME = """
SharedFunctionalGroupsSequence PerFrameFunctionalGroupsSequence PixelMeasuresSequence
PlanePositionSequence PlaneOrientationSequence FrameContentSequence FrameAcquisitionNumber
FrameAcquisitionDuration CardiacCyclePosition RespiratoryCyclePosition DimensionIndexValues
TemporalPositionIndex StackID InStackPositionNumber PixelValueTransformationSequence
FrameVOILUTSequence DerivationImageSequence
CTImageFrameTypeSequence FrameType PixelPresentation VolumetricProperties VolumeBasedCalculationTechnique
MRImageFrameTypeSequence ComplexImageComponent AcquisitionContrast CTAcquisitionTypeSequence
CTAcquisitionDetailsSequence CTTableDynamicsSequence CTPositionSequence CTGeometrySequence
CTReconstructionSequence CTExposureSequence CTXRayDetailsSequence MRTimingAndRelatedParametersSequence
MREchoSequence MRModifierSequence MRReceiveCoilSequence MRTransmitCoilSequence MRFOVGeometrySequence
MRImagingModifierSequence MRDiffusionSequence MRAveragesSequence CardiacSynchronizationSequence
RespiratorySynchronizationSequence FrameAnatomySequence FrameLaterality PlanePositionVolumeSequence
PlaneOrientationVolumeSequence TemporalPositionSequence DimensionOrganizationSequence
DimensionIndexSequence DimensionIndexPointer FunctionalGroupPointer DimensionOrganizationType
 SegmentSequence SegmentNumber SegmentAlgorithmType SegmentationType
SegmentationFractionalType MaximumFractionalValue SegmentIdentificationSequence
SegmentedPropertyCategoryCodeSequence SegmentedPropertyTypeCodeSequence
SegmentedPropertyTypeModifierCodeSequence RecommendedDisplayCIELabValue RecommendedDisplayGrayscaleValue
ReferencedSeriesSequence ReferencedInstanceSequence ReferencedSOPSequence SegmentsOverlap
"""
_CODES_AND_SR = """
CodeValue CodingSchemeDesignator CodingSchemeVersion CodeMeaning LongCodeValue URNCodeValue
ContextIdentifier ContextUID MappingResource MappingResourceUID ContextGroupExtensionFlag
EquivalentCodeSequence ValueType RelationshipType ConceptNameCodeSequence
ConceptCodeSequence MeasuredValueSequence NumericValue FloatingPointValue RationalNumeratorValue
RationalDenominatorValue MeasurementUnitsCodeSequence NumericValueQualifierCodeSequence
ContinuityOfContent CompletionFlag VerificationFlag PreliminaryFlag TemporalRangeType
ReferencedSamplePositions ReferencedTimeOffsets GraphicType GraphicData
ReferencedContentItemIdentifier ContentTemplateSequence TemplateIdentifier
CodingSchemeIdentificationSequence CodingSchemeUID PerformedProcedureCodeSequence
PredecessorDocumentsSequence CurrentRequestedProcedureEvidenceSequence
PertinentOtherEvidenceSequence ReferencedWaveformChannels AnnotationGroupNumber
"""
_RT = """
DoseUnits DoseType DoseSummationType GridFrameOffsetVector DoseGridScaling TissueHeterogeneityCorrection
ReferencedRTPlanSequence ReferencedFractionGroupSequence ReferencedFractionGroupNumber
ReferencedBeamSequence ReferencedBeamNumber StructureSetROISequence ROINumber ROIGenerationAlgorithm
ROIContourSequence ROIDisplayColor ContourSequence ContourGeometricType NumberOfContourPoints ContourData
ContourImageSequence ContourNumber ReferencedROINumber RTROIObservationsSequence ObservationNumber
RTROIInterpretedType ROIPhysicalPropertiesSequence ROIPhysicalProperty ROIPhysicalPropertyValue
ReferencedFrameOfReferenceSequence RTReferencedStudySequence RTReferencedSeriesSequence RTPlanGeometry
PlanIntent FractionGroupSequence FractionGroupNumber NumberOfFractionsPlanned NumberOfBeams
NumberOfBrachyApplicationSetups BeamMeterset BeamDose BeamSequence BeamNumber BeamType RadiationType
PrimaryDosimeterUnit SourceAxisDistance BeamLimitingDeviceSequence RTBeamLimitingDeviceType
NumberOfLeafJawPairs LeafPositionBoundaries TreatmentDeliveryType NumberOfWedges NumberOfCompensators
NumberOfBoli NumberOfBlocks FinalCumulativeMetersetWeight NumberOfControlPoints ControlPointSequence
ControlPointIndex NominalBeamEnergy DoseRateSet GantryAngle GantryRotationDirection
BeamLimitingDeviceAngle BeamLimitingDeviceRotationDirection PatientSupportAngle
PatientSupportRotationDirection TableTopEccentricAngle TableTopEccentricRotationDirection
IsocenterPosition SourceToSurfaceDistance CumulativeMetersetWeight BeamLimitingDevicePositionSequence
LeafJawPositions PatientSetupSequence PatientSetupNumber SetupTechnique DoseReferenceSequence
DoseReferenceNumber DoseReferenceStructureType DoseReferenceType TargetPrescriptionDose
DeliveryMaximumDose ReferencedStructureSetSequence ApprovalStatus ReferencedDoseReferenceSequence
ReferencedDoseReferenceNumber BeamDoseSpecificationPoint ReferencedPatientSetupNumber
ReferencedToleranceTableNumber RTPlanRelationship ReferencedDoseSequence DoseReferencePointCoordinates
CumulativeDoseReferenceCoefficient NominalPriorDose
"""
_NM_PET = """
EnergyWindowVector NumberOfEnergyWindows DetectorVector NumberOfDetectors PhaseVector NumberOfPhases
RotationVector NumberOfRotations RRIntervalVector NumberOfRRIntervals TimeSlotVector NumberOfTimeSlots
SliceVector AngularViewVector TimeSliceVector NumberOfTimeSlices EnergyWindowInformationSequence
EnergyWindowRangeSequence EnergyWindowLowerLimit EnergyWindowUpperLimit DetectorInformationSequence
CollimatorType ZoomFactor CenterOfRotationOffset ViewCodeSequence RadiopharmaceuticalInformationSequence
RadionuclideTotalDose RadionuclideHalfLife RadionuclidePositronFraction RadionuclideCodeSequence
RadiopharmaceuticalCodeSequence RadiopharmaceuticalVolume RadiopharmaceuticalSpecificActivity Units
CountsSource SeriesType DecayCorrection DecayFactor DoseCalibrationFactor ScatterFractionFactor
DeadTimeFactor FrameReferenceTime ImageIndex RandomsCorrectionMethod AxialAcceptance AxialMash
TransverseMash CoincidenceWindowWidth PrimaryPromptsCountsAccumulated SliceSensitivityFactor
DetectorElementSize ReconstructionMethod AttenuationCorrectionMethod ScatterCorrectionMethod
"""
_WAVEFORM = """
WaveformSequence MultiplexGroupTimeOffset TriggerTimeOffset WaveformOriginality NumberOfWaveformChannels
NumberOfWaveformSamples SamplingFrequency ChannelDefinitionSequence
WaveformChannelNumber ChannelStatus ChannelSourceSequence ChannelSourceModifiersSequence
SourceWaveformSequence ChannelSensitivity ChannelSensitivityUnitsSequence
ChannelSensitivityCorrectionFactor ChannelBaseline ChannelTimeSkew ChannelSampleSkew ChannelOffset
WaveformBitsStored FilterLowFrequency FilterHighFrequency NotchFilterFrequency NotchFilterBandwidth
ChannelMinimumValue ChannelMaximumValue WaveformBitsAllocated WaveformSampleInterpretation
WaveformPaddingValue WaveformData
"""

#: Keywords of the allowlist (attributes not in Table E.1-1 that are kept).
SAFE: frozenset[str] = frozenset(" ".join(
    (_SOP_AND_IMAGE, _PIXELS, _GEOMETRY, _CT, _MR, _XRAY_US, _MULTIFRAME, _CODES_AND_SR, _RT, _NM_PET,
     _WAVEFORM)
).split())

#: UIDs that name definitions (SOP classes, coding schemes, transfer syntaxes), not instances: kept.
DEFINITION_UIDS = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
    "CodingSchemeUID", "ContextUID", "MappingResourceUID", "ReferencedSOPClassUIDInFile",
})

#: Pixel payloads: kept at the top level only (an icon or a nested image could show anything).
PIXEL_KEYWORDS = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData"})


@cache
def safe_tags() -> frozenset[int]:
    """:data:`SAFE` as tags; raises if a keyword is misspelt (caught by the tests)."""
    tags = set()
    for keyword in SAFE:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword} in the de-identification allowlist is not a DICOM keyword")
        tags.add(tag)
    overlap = {keyword_for_tag(t) for t in tags if t in table() or t in TABLE_ADDITIONS}
    if overlap:
        raise ValueError(f"{sorted(overlap)} are in Table E.1-1 and must not be on the allowlist too")
    return frozenset(tags)


@cache
def supplement_tags() -> dict[int, Rule]:
    """:data:`SUPPLEMENT` keyed by tag."""
    out = {}
    for keyword, rule in SUPPLEMENT.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword} in the de-identification supplement is not a DICOM keyword")
        out[tag] = rule
    return out


def rule_for(tag: int) -> Rule | None:
    """The table's (or its 2026c additions', or the supplement's) rule for ``tag``; None if none names it."""
    return table().get(tag) or TABLE_ADDITIONS.get(tag) or supplement_tags().get(tag)
